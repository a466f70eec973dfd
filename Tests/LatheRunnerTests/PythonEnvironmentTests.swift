import Testing
@testable import LatheRunner

@Suite("Python environments")
struct PythonEnvironmentTests {
    @Test("an installer's failure is summed up from its own error lines and the last line it printed")
    func installerReason() {
        let uv = "Using Python 3.11.7 environment at: .\nerror: No solution found when resolving dependencies\n  cause: Because x was not found, we can conclude that your requirements are unsatisfiable.\n"
        #expect(PythonEnvironment.reason(uv) == "No solution found when resolving dependencies; cause: Because x was not found, we can conclude that your requirements are unsatisfiable.")
        let build = "error: Failed to build `evil @ http://h/evil.tar.gz`\n  Caused by: Build backend failed to build wheel (exit status: 1)\n\n[stderr]\nEVIL-BUILD-RAN\nevil build gives up\n"
        #expect(PythonEnvironment.reason(build) == "Failed to build `evil @ http://h/evil.tar.gz`; Caused by: Build backend failed to build wheel (exit status: 1); evil build gives up")
        let boxed = "  × Failed to build `evil @ http://h/evil.tar.gz`\n  ├─▶ The build backend returned an error\n  ╰─▶ Call to `build_wheel` failed (exit status: 1)\n\n      [stderr]\n      evil build gives up\n\n      hint: This usually indicates a problem with the package or the build environment.\n"
        #expect(PythonEnvironment.reason(boxed) == "Failed to build `evil @ http://h/evil.tar.gz`; The build backend returned an error; Call to `build_wheel` failed (exit status: 1); evil build gives up; hint: This usually indicates a problem with the package or the build environment.")
        #expect(PythonEnvironment.reason("") == "the installer printed nothing")
        #expect(PythonEnvironment.reason("the environment grew past 20 GB and its build was stopped") == "the environment grew past 20 GB and its build was stopped")
    }
}
