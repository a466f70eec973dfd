import Foundation
import LatheArchive
import Testing

@Suite("bytes as text")
struct ByteEncodingTests {
    @Test("hex and URL-safe base64 match what Foundation writes, for every length up to 40 and every byte value")
    func matchesFoundation() {
        let all = (0...255).map(UInt8.init)
        #expect(ByteEncoding.hex(all) == all.map { String(format: "%02x", $0) }.joined())
        for length in 0...40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255) }
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(ByteEncoding.base64URL(bytes) == expected, "\(bytes)")
            #expect(ByteEncoding.hex(bytes) == bytes.map { String(format: "%02x", $0) }.joined())
        }
    }
}
