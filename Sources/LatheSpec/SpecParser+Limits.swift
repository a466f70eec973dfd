import Foundation
import Yams

extension SpecParser {
    /// The bounds every spec must keep, whether it comes from `lathe.yaml` or a pushed config:
    /// numbers a JSON client, a form and a 64-bit integer all hold exactly, and sizes that keep
    /// pages, schemas and the database small.
    public enum Limits {
        public static let documentBytes = 1 << 20
        public static let expandedValues = 100_000
        /// 2^53: the largest integer a JavaScript client (and a Double) holds exactly.
        public static let safeInteger = 9_007_199_254_740_992.0
        public static let textBytes = 16 << 10
        public static let patternBytes = 1024
        public static let inputs = 256
        public static let choices = 1000
        public static let packages = 1000
        public static let weights = 10_000
        public static let concurrency = 1024
        public static let length = 1 << 30
        public static let timeout = 7 * 86_400
        /// How deep an output's items and properties nest.
        public static let outputDepth = 8
    }

    /// Counts the values of the tree as expanded, stopping as soon as `budget` is spent.
    static func fits(_ node: Node, budget: inout Int) -> Bool {
        budget -= 1
        if budget < 0 { return false }
        switch node {
        case .scalar, .alias: return true
        case .sequence(let sequence): return sequence.allSatisfy { fits($0, budget: &budget) }
        case .mapping(let mapping): return mapping.allSatisfy { fits($0.key, budget: &budget) && fits($0.value, budget: &budget) }
        }
    }

    /// A value echoed in a message, cut so a long one cannot flood the output.
    static func clip(_ text: String) -> String {
        text.count <= 80 ? text : text.prefix(77) + "…"
    }

    /// Whether a number is finite and within ±2^53.
    static func isSafe(_ value: Double) -> Bool {
        value.isFinite && abs(value) <= Limits.safeInteger
    }

    /// A path inside the project: relative, without `..`, normalized.
    static func projectPath(_ path: String) -> String? {
        let normalized = (path as NSString).standardizingPath
        if path.hasPrefix("/") || path.contains("\0") || normalized.hasPrefix("..") || normalized.isEmpty || normalized == "." { return nil }
        return normalized
    }
}
