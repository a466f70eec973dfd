import ArgumentParser
import Foundation
import LatheRegistry
import LatheCore
import LatheStore
import Logging

/// Operator commands on a data folder, with the server running or not.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Manage users, organizations and tokens in a registry's data folder; collect unreferenced blobs.",
        subcommands: [User.self, Token.self, WorkerToken.self, Workers.self, Organization.self, GC.self]
    )

    struct DataOption: ParsableArguments {
        @Option(help: "The registry's data folder (env LATHE_DATA).")
        var data: String?

        @Option(help: "The registry's PostgreSQL URL, when it runs on one (env LATHE_DATABASE_URL).")
        var database: String?

        @OptionGroup var blobOptions: BlobOptions

        /// Opens the data folder, runs `body`, and closes the database whatever happens.
        func withRegistry(_ body: (Registry) async throws -> Void) async throws {
            guard let path = data ?? ProcessInfo.processInfo.environment["LATHE_DATA"] else {
                throw ValidationError("pass --data DIR (the folder `lathe serve --data` uses)")
            }
            var logger = Logger(label: "lathe.admin")
            logger.logLevel = .error
            let url = database ?? ProcessInfo.processInfo.environment["LATHE_DATABASE_URL"]
            let data = URL(fileURLWithPath: path)
            // A runtime folder of this command's own: it may run beside servers on the same data.
            let runtime = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-admin-\(getpid())")
            defer { try? FileManager.default.removeItem(at: runtime) }
            let blobs = try blobOptions.store(runtime: runtime)
            try await blobs?.check()
            let registry = try await Registry.open(data: data, database: url, blobs: blobs, runtime: runtime, baseURL: "", logger: logger)
            do {
                try await body(registry)
                try await registry.database.close()
            } catch {
                try? await registry.database.close()
                throw error
            }
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Remove blobs, files and outputs nothing refers to (older than the grace period).",
            discussion: "Registry blobs no manifest names (deleted models and versions; weights another model shares stay), "
                + "uploaded files whose row is gone, output files no prediction names. Safe while the server runs.")
        @Flag(help: "Print what would be removed; remove nothing.") var dryRun = false
        @Option(help: "Seconds an unreferenced object must be old before it goes (spares pushes in flight).") var grace: Double = 3600
        @OptionGroup var data: DataOption

        func run() async throws {
            try await guarded {
                try await data.withRegistry { registry in
                    let report = try await GarbageCollector(registry: registry, grace: max(0, grace)).collect(dryRun: dryRun)
                    for item in report.removed { print("\(dryRun ? "would remove" : "removed") \(item.key) (\(item.size) bytes)") }
                    let megabytes = String(format: "%.1f", Double(report.bytes) / 1_048_576)
                    print(dryRun ? "would remove \(report.removed.count) objects, freeing \(megabytes) MiB (\(report.bytes) bytes)"
                                 : "removed \(report.removed.count) objects, freed \(megabytes) MiB (\(report.bytes) bytes)")
                }
            }
        }
    }

    struct User: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Users: create, list, set a password, disable or enable, delete, make or unmake operators.",
            subcommands: [Create.self, List.self, SetPassword.self, Disable.self, Enable.self, Delete.self, MakeAdmin.self, Unadmin.self])

        /// A command that does one thing to one user and says what it did.
        protocol UserAction: AsyncParsableCommand {
            var name: String { get }
            var data: DataOption { get }
            static func act(_ registry: Registry, _ user: Account) async throws -> String
        }

        /// Runs `body` on the user named `name`.
        static func onUser(_ name: String, _ data: DataOption, _ body: @escaping (Registry, Account) async throws -> Void) async throws {
            try await guarded {
                try await data.withRegistry { registry in
                    try await body(registry, try await registry.accounts.user(named: name))
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "list", abstract: "List users: operator, password, disabled, models and live tokens.")
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        let users = try await registry.accounts.users()
                        if users.isEmpty { print("no users yet; create one with `lathe admin user create NAME --password-stdin`") }
                        for user in users {
                            var traits = [user.isAdmin ? "operator" : "user", user.hasPassword ? "password set" : "no password (web sign-in closed)"]
                            if let disabled = user.disabledAt { traits.append("disabled since \(disabled)") }
                            print("\(user.username)\t\(traits.joined(separator: ", "))\t\(user.models) model\(user.models == 1 ? "" : "s")\t\(user.tokens) token\(user.tokens == 1 ? "" : "s")")
                        }
                    }
                }
            }
        }

        struct SetPassword: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "set-password", abstract: "Set a user's web password, read from standard input (one line).")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            func run() async throws {
                guard let password = readLine(strippingNewline: true), !password.isEmpty else {
                    throw ValidationError("send the password on standard input, e.g. `printf '%s\\n' \"$PASSWORD\" | lathe admin user set-password \(name) --data DIR`")
                }
                try await User.onUser(name, data) { registry, user in
                    try await registry.accounts.setPassword(user, password: password)
                    print("set the password of \(user.username)")
                }
            }
        }

        struct Disable: UserAction {
            static let configuration = CommandConfiguration(abstract: "Disable a user: their tokens and web sessions stop working at once (within a second on a running server).")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            static func act(_ registry: Registry, _ user: Account) async throws -> String {
                try await registry.accounts.setDisabled(user, true)
                return "disabled \(user.username); `lathe admin user enable \(user.username)` undoes it"
            }
        }

        struct Enable: UserAction {
            static let configuration = CommandConfiguration(abstract: "Enable a disabled user again (their tokens work again; they sign in anew).")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            static func act(_ registry: Registry, _ user: Account) async throws -> String {
                try await registry.accounts.setDisabled(user, false)
                return "enabled \(user.username)"
            }
        }

        struct Delete: UserAction {
            static let configuration = CommandConfiguration(abstract: "Delete a user with their tokens and sessions (refused while they own models).")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            static func act(_ registry: Registry, _ user: Account) async throws -> String {
                try await registry.accounts.deleteUser(user)
                return "deleted \(user.username)"
            }
        }

        struct MakeAdmin: UserAction {
            static let configuration = CommandConfiguration(commandName: "admin", abstract: "Make a user an operator.")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            static func act(_ registry: Registry, _ user: Account) async throws -> String {
                try await registry.accounts.setAdmin(user, true)
                return "\(user.username) is an operator"
            }
        }

        struct Unadmin: UserAction {
            static let configuration = CommandConfiguration(commandName: "unadmin", abstract: "Make an operator a plain user again.")
            @Argument(help: "The user.") var name: String
            @OptionGroup var data: DataOption

            static func act(_ registry: Registry, _ user: Account) async throws -> String {
                try await registry.accounts.setAdmin(user, false)
                return "\(user.username) is no longer an operator"
            }
        }

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

    struct WorkerToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "worker-token", abstract: "Tokens for `lathe worker` (they open only the worker protocol).",
            subcommands: [Create.self, List.self, Revoke.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a worker token and print it (and nothing else); it is stored hashed.")
            @Option(help: "A name to recognise the token by.") var name: String = "worker"
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        print(try await WorkerTokenStore(database: registry.database).create(name: name).secret)
                    }
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "ls", abstract: "List worker tokens (never their secrets).")
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        for token in try await WorkerTokenStore(database: registry.database).list() {
                            print("\(token.id)\t\(token.name)\tcreated \(token.createdAt)\(token.revokedAt.map { "\trevoked \($0)" } ?? "")")
                        }
                    }
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a worker token by id: workers using it are refused from then on.")
            @Argument(help: "The token's id (from `lathe admin worker-token ls`).") var id: String
            @OptionGroup var data: DataOption

            func run() async throws {
                try await guarded {
                    try await data.withRegistry { registry in
                        guard try await WorkerTokenStore(database: registry.database).revoke(id) else {
                            throw ValidationError("no live worker token \(id); `lathe admin worker-token ls` lists them")
                        }
                        print("revoked \(id)")
                    }
                }
            }
        }
    }

    struct Workers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workers", abstract: "List the fleet every replica shares: each registered `lathe worker` and each replica's embedded worker, what it offers, the instances on it and which replica placed them.")
        @OptionGroup var data: DataOption

        func run() async throws {
            try await guarded {
                try await data.withRegistry { registry in
                    let store = WorkerStore(database: registry.database)
                    let workers = try await store.workers()
                    let instances = try await store.instances()
                    if workers.isEmpty { print("no worker is registered (start one with `lathe worker --registry URL`)") }
                    let now = Date()
                    for worker in workers {
                        let theirs = instances.filter { $0.workerID == worker.id }
                        let seen = worker.seenUntil > now ? "polling" : "seen \(Int(now.timeIntervalSince(worker.seenUntil))) s ago"
                        print("\(worker.id)\t\(worker.name)\t\(worker.hardware.skus.joined(separator: ","))\t\(theirs.count) of \(worker.capacity) instance(s)\t\(seen)\tlathe \(worker.version)")
                        for instance in theirs { print("  \(instance.id)\tplaced by \(instance.replica) (\(instance.replicaURL))") }
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

extension AdminCommand.User.UserAction {
    func run() async throws {
        try await AdminCommand.User.onUser(name, data) { registry, user in print(try await Self.act(registry, user)) }
    }
}
