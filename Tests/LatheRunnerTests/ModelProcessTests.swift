import Foundation
import LatheTestSupport
import Testing
@testable import LatheArchive
@testable import LatheRunner
@testable import LatheSpec

/// A Lathe home shared by the runner tests, so the (empty) Python environment is built once.
let runnerHome = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-runner-tests-home")

/// Starts the predictor `code` (class Predictor) declared with `inputs` and `output`.
func startModel(_ code: String, inputs: String = "  text: {type: string}", output: String = "{type: string}",
                sandbox: Sandbox? = try? Sandbox.detect(network: false)) async throws -> (ModelProcess, SetupResult) {
    let project = try TestSupport.makeProject([
        "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n\(inputs)\noutput: \(output)\n",
        "predict.py": code,
    ])
    let spec = try SpecParser.load(project: project)
    let prepared = try PreparedModel.project(project, spec: spec)
    let work = runnerHome.appendingPathComponent("work/\(UUID().uuidString)")
    let configuration = try prepared.configuration(home: runnerHome, workDirectory: work, sandbox: sandbox)
    let process = ModelProcess(configuration)
    let setup = try await process.start()
    return (process, setup)
}

/// A fresh output folder inside the instance's work folder (the only place the model may write).
func outputs(_ process: ModelProcess) -> URL {
    process.configuration.workDirectory.appendingPathComponent("outputs-\(UUID().uuidString)")
}

@Suite("the runner process", .serialized)
struct ModelProcessTests {
    @Test("setup once, predictions with logs captured at the file-descriptor level")
    func predictsWithLogs() async throws {
        let (process, setup) = try await startModel("""
        import os, sys
        class Predictor:
            def setup(self):
                print("loading")
                self.count = 0
            def predict(self, text: str) -> str:
                self.count += 1
                print("python print", text)
                os.write(2, b"raw fd 2\\n")
                os.system("echo from a subprocess")
                return f"{text}-{self.count}"
        """)
        defer { process.terminate() }
        guard case .ready(_, let setupLogs) = setup else { Issue.record("setup failed: \(setup)"); return }
        #expect(setupLogs.contains("loading"))
        let first = await process.predict(id: "a", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 30)
        #expect(first.status == .succeeded)
        #expect(first.output == .string("x-1"))
        #expect(first.logs.contains("python print x"))
        #expect(first.logs.contains("raw fd 2"))
        #expect(first.logs.contains("from a subprocess"))
        #expect(!first.logs.contains("loading"))
        let second = await process.predict(id: "b", input: ["text": .string("y")], outputDirectory: outputs(process), timeout: 30)
        #expect(second.output == .string("y-2"), "setup ran once; the instance stays warm")
    }

    @Test("iterator outputs arrive one by one, before the prediction ends")
    func streams() async throws {
        let (process, _) = try await startModel("""
        import time
        from typing import Iterator
        class Predictor:
            def predict(self, text: str) -> Iterator[str]:
                for word in text.split():
                    time.sleep(0.1)
                    yield word
        """, output: "{type: iterator, items: string}")
        defer { process.terminate() }
        let seen = Recorder()
        let started = Date()
        let outcome = await process.predict(id: "s", input: ["text": .string("a b c")], outputDirectory: outputs(process), timeout: 30) { event in
            if case .output(let index, let value) = event { seen.add(index, value, Date().timeIntervalSince(started)) }
        }
        #expect(outcome.output == .array([.string("a"), .string("b"), .string("c")]))
        let events = seen.all
        #expect(events.map(\.0) == [0, 1, 2])
        #expect(events[0].2 < events[2].2 - 0.15, "the first item came well before the last")
    }

    @Test("a failing predictor fails its prediction with the exception, and the instance survives")
    func failure() async throws {
        let (process, _) = try await startModel("""
        class Predictor:
            def predict(self, text: str) -> str:
                if text == "bad":
                    raise ValueError("cannot handle bad")
                return text
        """)
        defer { process.terminate() }
        let failed = await process.predict(id: "f", input: ["text": .string("bad")], outputDirectory: outputs(process), timeout: 30)
        #expect(failed.status == .failed)
        #expect(failed.error == "cannot handle bad")
        #expect(failed.logs.contains("Traceback"))
        let fine = await process.predict(id: "g", input: ["text": .string("good")], outputDirectory: outputs(process), timeout: 30)
        #expect(fine.status == .succeeded)
    }

    @Test("cancel stops a running prediction")
    func cancel() async throws {
        let (process, _) = try await startModel("""
        import time
        class Predictor:
            def predict(self, text: str) -> str:
                time.sleep(30)
                return text
        """)
        defer { process.terminate() }
        Task {
            try await Task.sleep(nanoseconds: 300_000_000)
            process.cancel(id: "c")
        }
        let started = Date()
        let outcome = await process.predict(id: "c", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 60)
        #expect(outcome.status == .canceled)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("a cancel reaches a predictor busy in Python code, and the next command still arrives")
    func cancelBusy() async throws {
        let (process, _) = try await startModel("""
        class Predictor:
            def predict(self, text: str) -> str:
                if text == "spin":
                    while True:
                        pass
                return text
        """)
        defer { process.terminate() }
        Task {
            try await Task.sleep(nanoseconds: 300_000_000)
            process.cancel(id: "spin")
        }
        let outcome = await process.predict(id: "spin", input: ["text": .string("spin")], outputDirectory: outputs(process), timeout: 60)
        #expect(outcome.status == .canceled)
        let next = await process.predict(id: "next", input: ["text": .string("again")], outputDirectory: outputs(process), timeout: 30)
        #expect(next.output == .string("again"))
    }

    @Test("what Python code prints arrives in whole lines and in order, an unfinished line at the end, a background thread's too")
    func printedLines() async throws {
        let (process, _) = try await startModel("""
        import sys, threading
        class Predictor:
            def predict(self, text: str) -> str:
                print("one", end="")
                print(" two")
                sys.stderr.write("three\\n")
                worker = threading.Thread(target=lambda: print("from a thread"))
                worker.start()
                worker.join()
                sys.stdout.write("unfinished")
                return text
        """)
        defer { process.terminate() }
        let lines = LogTexts()
        let outcome = await process.predict(id: "p", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 30) { event in
            if case .log(let text) = event { lines.add(text) }
        }
        #expect(outcome.status == .succeeded)
        #expect(outcome.logs.contains("one two\nthree\n"))
        #expect(outcome.logs.contains("from a thread\n"))
        #expect(outcome.logs.contains("unfinished"))
        #expect(lines.all.contains("one two\n"), "a line goes out whole, not in print()'s pieces")
    }

    @Test("a predictor that ignores cancellation is stopped by its timeout")
    func timeout() async throws {
        let (process, _) = try await startModel("""
        import time
        class Predictor:
            def predict(self, text: str) -> str:
                while True:
                    try:
                        time.sleep(1)
                    except BaseException:  # swallows the cancel, however it arrives
                        pass
        """)
        defer { process.terminate() }
        let started = Date()
        let outcome = await process.predict(id: "t", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 1)
        #expect(outcome.status == .failed)
        #expect(outcome.error == "Prediction timed out")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("a crashed model process fails its prediction with a clear error")
    func crash() async throws {
        let (process, _) = try await startModel("""
        import os, signal
        class Predictor:
            def predict(self, text: str) -> str:
                os.kill(os.getpid(), signal.SIGKILL)
        """, sandbox: nil)
        let outcome = await process.predict(id: "k", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 30)
        #expect(outcome.status == .failed)
        #expect(outcome.error == "Prediction failed: the model process was killed by signal 9 while it was running")
    }

    @Test("setup failures report the exception and the setup logs")
    func setupFails() async throws {
        let (process, setup) = try await startModel("""
        class Predictor:
            def setup(self):
                print("about to fail")
                raise RuntimeError("weights missing")
            def predict(self, text: str) -> str:
                return text
        """)
        defer { process.terminate() }
        guard case .failed(let error, let logs) = setup else { Issue.record("expected a setup failure"); return }
        #expect(error == "RuntimeError: weights missing")
        #expect(logs.contains("about to fail"))
        #expect(logs.contains("Traceback"))
    }

    @Test("file outputs are written to the output folder; Path inputs arrive as paths")
    func files() async throws {
        let (process, _) = try await startModel("""
        from cog import BasePredictor, Input, Path
        class Predictor(BasePredictor):
            def predict(self, source: Path = Input(description="in")) -> Path:
                assert isinstance(source, Path), type(source)
                target = Path("/tmp/copy.txt")
                target.write_text(source.read_text().upper())
                return target
        """, inputs: "  source: {type: file}", output: "{type: file}")
        defer { process.terminate() }
        let directory = outputs(process)
        let input = process.configuration.workDirectory.appendingPathComponent("in-\(UUID().uuidString).txt")
        try Data("hello file".utf8).write(to: input)
        let outcome = await process.predict(id: "p", input: ["source": .string(input.path)], outputDirectory: directory, timeout: 30)
        #expect(outcome.status == .succeeded, "\(outcome.error ?? "") \(outcome.logs)")
        #expect(outcome.output == .object(["$file": .string("copy.txt")]))
        #expect(try String(contentsOf: directory.appendingPathComponent("copy.txt"), encoding: .utf8) == "HELLO FILE")
    }
}

/// Collects events from the runner's reading thread.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [(Int, JSONValue, TimeInterval)] = []
    func add(_ index: Int, _ value: JSONValue, _ time: TimeInterval) {
        lock.lock(); events.append((index, value, time)); lock.unlock()
    }
    var all: [(Int, JSONValue, TimeInterval)] { lock.lock(); defer { lock.unlock() }; return events }
}

/// Texts as the model process hands them over, in order.
final class LogTexts: @unchecked Sendable {
    private let lock = NSLock()
    private var texts: [String] = []
    func add(_ text: String) { lock.withLock { texts.append(text) } }
    var all: [String] { lock.withLock { texts } }
}
