import _FoundationICU

/// An input's `pattern` checked with a bound on the work: the pattern is the model author's,
/// the text the caller's, and a backtracking expression (`(a+)+$`) on a few dozen characters
/// would otherwise hold a registry thread for hours. ICU's own step limit ends such a match,
/// and the input is refused (nothing unchecked gets through). NSRegularExpression, which
/// drives the same ICU engine, offers no such limit.
public enum PatternMatch: Sendable, Equatable {
    case matched, notMatched
    /// The match was stopped at its limit, or the pattern does not compile.
    case notDecided

    /// ICU's limit, in its match-engine steps ("on the order of milliseconds" each); a plain
    /// pattern on any text a request can carry stays far below it.
    public static let stepLimit: Int32 = 50

    /// Whether `pattern` matches somewhere in `text` (as `NSRegularExpression.firstMatch`).
    public static func find(_ pattern: String, in text: String, stepLimit: Int32 = stepLimit) -> PatternMatch {
        var status = U_ZERO_ERROR
        let source = Array(pattern.utf16), subject = Array(text.utf16)
        guard let regex = swift_uregex_open(source, Int32(source.count), 0, nil, &status), status.rawValue <= U_ZERO_ERROR.rawValue else {
            return .notDecided
        }
        defer { swift_uregex_close(regex) }
        swift_uregex_setTimeLimit(regex, stepLimit, &status)
        let found = subject.withUnsafeBufferPointer { buffer -> UBool in
            swift_uregex_setText(regex, buffer.baseAddress, Int32(buffer.count), &status)
            return swift_uregex_find(regex, 0, &status)
        }
        guard status.rawValue <= U_ZERO_ERROR.rawValue else { return .notDecided }
        return found != 0 ? .matched : .notMatched
    }
}
