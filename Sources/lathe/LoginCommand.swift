import ArgumentParser
import Foundation
import LatheArchive
import LatheClient

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Save a token for a registry (checked against it first)."
    )

    @Argument(help: "The registry URL, e.g. http://127.0.0.1:8080 (default: LATHE_REGISTRY).")
    var registry: String?

    @Flag(name: .customLong("token-stdin"), help: "Read the token from standard input instead of asking.")
    var tokenStdin = false

    func run() async throws {
        try await guarded {
            guard let url = (registry ?? ProcessInfo.processInfo.environment["LATHE_REGISTRY"]).map(Credentials.normalize) else {
                throw ValidationError("name the registry: lathe login http://host:port")
            }
            if !tokenStdin { printError("Token (from `lathe admin token create` or the account page): ", terminator: "") }
            guard let token = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces), !token.isEmpty else {
                throw ValidationError("no token given")
            }
            try await withRegistryClient(base: url, token: token) { client in
            let username = try await client.username()
            var credentials = Credentials.load(home: LocalStore.home)
            credentials.registries[url] = .init(username: username, token: token)
            credentials.current = url
            try credentials.save(home: LocalStore.home)
            print("logged in to \(url) as \(username)")
            }
        }
    }
}
