/// The types an input or output may declare (DESIGN §3).
public enum ValueType: String, Sendable, Codable, CaseIterable {
    case string, integer, number, boolean, file, secret, object, array
    /// Output only: items streamed as they are produced.
    case iterator

    public static let inputTypes: [ValueType] = [.string, .integer, .number, .boolean, .file, .secret, .object, .array]
    public static let itemTypes: [ValueType] = [.string, .integer, .number, .boolean, .file, .object]
}
