import Foundation

/// Typed values parsed out of request headers and query strings. Every parser here takes hostile
/// text (any length, any bytes, any number) and returns a checked value or nil; none of them
/// traps, overflows or allocates in proportion to a number it was given. Routes call these and
/// never convert header text to numbers themselves.
enum RequestValues {
    /// The longest header value worth looking at; anything longer is refused outright.
    static let maxValueLength = 256

    // MARK: - Durations

    /// A duration such as `90`, `30s`, `5m`, `1h30m` or `1.5h`, in seconds, or nil when the text
    /// is not one, is not finite, or exceeds `limit` seconds.
    static func duration(_ text: String, limit: Double) -> Double? {
        let text = text.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, text.utf8.count <= 32 else { return nil }
        if let plain = decimal(Substring(text)) { return plain <= limit ? plain : nil }
        var total = 0.0, number = Substring()
        var rest = Substring(text)
        while let character = rest.first {
            rest = rest.dropFirst()
            if character.isASCII, character.isNumber || character == "." {
                number.append(character)
                continue
            }
            guard let value = decimal(number) else { return nil }
            let unit: Double
            switch character {
            case "h": unit = 3600
            case "m": unit = 60
            case "s": unit = 1
            default: return nil
            }
            total += value * unit
            guard total.isFinite, total <= limit else { return nil }
            number = ""
        }
        return number.isEmpty ? total : nil
    }

    /// A plain non-negative decimal number (digits with at most one point), never NaN or infinite.
    static func decimal(_ text: Substring) -> Double? {
        guard !text.isEmpty, text.utf8.count <= 20, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              text.filter({ $0 == "." }).count <= 1, text != "." else { return nil }
        guard let value = Double(text), value.isFinite else { return nil }
        return value
    }

    /// A non-negative whole number that fits in `Int64`, from ASCII digits only (no sign, no
    /// spaces, no leading `+`).
    static func count(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int64(text)
    }

    // MARK: - Prefer

    /// The `wait` preference of a `Prefer` header (RFC 7240, as Replicate's sync mode uses it):
    /// nil when absent, the seconds to wait (1…60) when present. `wait` alone means 60.
    static func preferWait(_ header: String?) throws -> Double? {
        guard let header else { return nil }
        guard header.utf8.count <= maxValueLength else { throw RegistryError(400, "the Prefer header is too long; send Prefer: wait or Prefer: wait=N (1-60 seconds)") }
        for preference in header.split(separator: ",") {
            let parts = preference.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.first?.lowercased() == "wait" else { continue }
            guard parts.count == 2 else { return 60 }
            guard let seconds = decimal(Substring(parts[1])) else {
                throw RegistryError(400, "Prefer: wait=\(parts[1].prefix(32)) is not a number of seconds; send Prefer: wait=N with N from 1 to 60")
            }
            return min(max(seconds, 1), 60)
        }
        return nil
    }

    /// Whether the caller is one of Replicate's official clients (`replicate-python/…`,
    /// `replicate-javascript/…` in `User-Agent`), whose `run()` treats any `Prefer: wait`
    /// answer but `starting` as finished (replicate-python's `run.py`, as Replicate's own API
    /// answers): those get `starting` for a prediction still running when the wait runs out,
    /// everyone else its real status.
    static func expectsStartingAfterWait(_ userAgent: String?) -> Bool {
        guard let userAgent = userAgent?.lowercased() else { return false }
        return userAgent.hasPrefix("replicate-python/") || userAgent.hasPrefix("replicate-javascript/")
    }

    // MARK: - Byte ranges

    /// A `Range: bytes=…` request for a resource of `size` bytes (RFC 9110 §14.1.2): one range,
    /// `a-b`, `a-` or the suffix `-n`, clipped to the resource. nil for anything else, including
    /// several ranges, which are then ignored and the whole resource is sent, as the RFC allows.
    static func byteRange(_ header: String, size: Int64) -> ClosedRange<Int64>? {
        guard size > 0, header.utf8.count <= maxValueLength, header.hasPrefix("bytes=") else { return nil }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        if parts[0].isEmpty {
            guard let suffix = count(parts[1]), suffix > 0 else { return nil }
            return max(0, size - suffix)...(size - 1)
        }
        guard let start = count(parts[0]), start < size else { return nil }
        if parts[1].isEmpty { return start...(size - 1) }
        guard let end = count(parts[1]), end >= start else { return nil }
        return start...min(end, size - 1)
    }

    /// The first and last byte of an OCI upload chunk's `Content-Range` (`start-end`, also taken
    /// with a `bytes ` prefix and a `/total` suffix, as some clients send it).
    static func contentRange(_ header: String) -> (start: Int64, end: Int64)? {
        guard header.utf8.count <= maxValueLength else { return nil }
        var text = Substring(header.trimmingCharacters(in: .whitespaces))
        if text.hasPrefix("bytes ") { text = text.dropFirst(6) }
        if let slash = text.firstIndex(of: "/") { text = text[..<slash] }
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let start = count(parts[0]), let end = count(parts[1]), end >= start else { return nil }
        return (start, end)
    }

    // MARK: - Query values

    /// A page size from the query: `fallback` when absent, 400 when not a whole number in 1…`max`.
    static func pageSize(_ text: Substring?, name: String, fallback: Int, max: Int) throws -> Int {
        guard let text else { return fallback }
        guard let value = count(text), value >= 1, value <= Int64(max) else {
            throw RegistryError(400, "query parameter \(name) must be a whole number from 1 to \(max)", code: "PAGINATION_NUMBER_INVALID")
        }
        return Int(value)
    }
}

