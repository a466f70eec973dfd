import ArgumentParser
import Foundation
import LatheRegistry
import Logging

/// Operator commands on a data folder, with the server running or not.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Manage users, organizations and tokens in a registry's data folder.",
        subcommands: [User.self, Token.self, Organization.self]
    )

    struct DataOption: ParsableArguments {
        @Option(help: "The registry's data folder (env LATHE_DATA).")
        var data: String?

        @Option(help: "The registry's PostgreSQL URL, when it runs on one (env LATHE_DATABASE_URL).")
        var database: String?

        /// Opens the data folder, runs `body`, and closes the database whatever happens.
        func withRegistry(_ body: (Registry) async throws -> Void) async throws {
            guard let path = data ?? ProcessInfo.processInfo.environment["LATHE_DATA"] else {
                throw ValidationError("pass --data DIR (the folder `lathe serve --data` uses)")
            }
            var logger = Logger(label: "lathe.admin")
            logger.logLevel = .error
            let url = database ?? ProcessInfo.processInfo.environment["LATHE_DATABASE_URL"]
            let registry = try await Registry.open(data: URL(fileURLWithPath: path), database: url, baseURL: "", logger: logger)
            do {
                try await body(registry)
                try await registry.database.close()
            } catch {
                try? await registry.database.close()
                throw error
            }
        }
    }

    struct User: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Users.", subcommands: [Create.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a user.")
            @Argument(help: "Username: lowercase letters, digits, '-', '_', '.'.") var name: String
            @Flag(help: "Make the user an operator.") var admin = false
            @Flag(name: .customLong("password-stdin"), help: "Read a password for the web UI from standard input.") var passwordStdin = false
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    let password = passwordStdin ? readLine(strippingNewline: true) : nil
                    try await data.withRegistry { registry in
                        let user = try await registry.accounts.createUser(name, password: password, isAdmin: admin)
                        print("created user \(user.username)")
                    }
                }
            }
        }
    }

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "API tokens.", subcommands: [Create.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a token for a user and print it (and nothing else).")
            @Argument(help: "The user the token acts as.") var name: String
            @Option(help: "A label to recognise the token by.") var label: String = "cli"
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        guard let user = try await registry.accounts.account(named: name), user.kind == .user else {
                            throw ValidationError("no user named \(name); create it with `lathe admin user create \(name)`")
                        }
                        print(try await registry.accounts.createToken(for: user, label: label).secret)
                    }
                }
            }
        }
    }

    struct Organization: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "org", abstract: "Organizations.", subcommands: [Create.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create an organization owned by a user.")
            @Argument(help: "Organization name.") var name: String
            @Option(help: "The user who owns it.") var owner: String
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        guard let user = try await registry.accounts.account(named: owner), user.kind == .user else {
                            throw ValidationError("no user named \(owner)")
                        }
                        let organization = try await registry.accounts.createOrganization(name, owner: user)
                        print("created organization \(organization.username) owned by \(user.username)")
                    }
                }
            }
        }
    }
}
