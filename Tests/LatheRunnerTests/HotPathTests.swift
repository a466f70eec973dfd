import Foundation
import NIOCore
import Testing
@testable import LatheRunner
@testable import LatheSpec

/// The server's hot path (HotPath): once enabled, a prediction's tasks run on the server's
/// loop, and the model's answers are read there.
@Suite("the hot path", .serialized)
struct HotPathTests {
    @Test("tasks and the model's events run on the server's loop once it is enabled")
    func onTheLoop() async throws {
        let loop = HotPath.loopGroup.next()
        HotPath.enable()
        #expect(await HotPath.task { loop.inEventLoop }.value)
        let (process, _) = try await startModel("""
        class Predictor:
            def predict(self, text: str) -> str:
                print("a log line")
                return text
        """)
        defer { process.terminate() }
        let onLoop = LogTexts()
        let outcome = await process.predict(id: "h", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 30) { _ in
            onLoop.add(loop.inEventLoop ? "loop" : "elsewhere")
        }
        #expect(outcome.output == .string("x"))
        #expect(onLoop.all == ["loop"])
    }
}
