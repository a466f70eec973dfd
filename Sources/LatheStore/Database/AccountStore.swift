import Crypto
import Foundation
import LatheArchive
import HummingbirdBcrypt
import LatheRunner
import SQLKit

/// A user or an organization, as stored.
public struct Account: Sendable, Codable, Hashable {
    public enum Kind: String, Sendable, Codable { case user, organization }
    public var id: String
    public var username: String
    public var kind: Kind
    public var name: String?
    public var isAdmin: Bool
    public var createdAt: String

    package enum CodingKeys: String, CodingKey {
        case id, username, kind, name
        case isAdmin = "is_admin"
        case createdAt = "created_at"
    }
}

/// An API token as listed (the secret itself is shown once, at creation, and stored hashed).
public struct TokenRecord: Sendable, Codable, Hashable {
    public var id: String
    public var label: String
    public var createdAt: String
    public var lastUsedAt: String?
    public var revokedAt: String?

    package enum CodingKeys: String, CodingKey {
        case id, label
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case revokedAt = "revoked_at"
    }
}

/// Who is making a request: a signed-in user and the organizations they belong to.
public struct Principal: Sendable, Hashable {
    public var user: Account
    /// Ids of the organizations the user is a member of.
    public var organizationIDs: Set<String>

    /// Whether the principal may act for `ownerID` (itself, or an organization it belongs to).
    public func actsFor(_ ownerID: String) -> Bool {
        ownerID == user.id || organizationIDs.contains(ownerID)
    }
}

/// Users, organizations, memberships and tokens.
public struct AccountStore: Sendable {
    let sql: any SQLDatabase
    private let caches: RegistryCaches
    private let database: RegistryDatabase

    public init(database: RegistryDatabase) {
        sql = database.sql
        caches = database.caches
        self.database = database
    }

    /// First path segments of the server's own routes, which an account name would shadow.
    static let reservedNames: Set<String> = ["v1", "v2", "p", "files", "static", "account", "dashboard", "new", "signin", "signup", "signout",
                                             "organizations", "healthz", "metrics", "explore", "admin", "api", "login", "logout"]

    /// Lowercase letters, digits and single separators: valid as an OCI path component too.
    public static func isValidName(_ name: String) -> Bool {
        name.count <= 64 && name.range(of: #"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$"#, options: .regularExpression) != nil
    }

    public func createUser(_ username: String, password: String?, isAdmin: Bool = false) async throws -> Account {
        let hash: String?
        if let password { hash = try await Self.passwordHash(password) } else { hash = nil }
        return try await create(username, kind: .user, passwordHash: hash, isAdmin: isAdmin)
    }

    public func createOrganization(_ name: String, owner: Account) async throws -> Account {
        let organization = try await create(name, kind: .organization, passwordHash: nil, isAdmin: false)
        try await setMember(organization, user: owner, role: "owner")
        return organization
    }

    private func create(_ username: String, kind: Account.Kind, passwordHash: String?, isAdmin: Bool) async throws -> Account {
        guard Self.isValidName(username) else {
            throw StoreError(.invalid, "\"\(username)\" is not a valid name: use lowercase letters, digits and single '-', '_' or '.' between them", code: "NAME_INVALID")
        }
        if Self.reservedNames.contains(username) {
            throw StoreError(.conflict, "the name \"\(username)\" is reserved for the registry's own pages; choose another")
        }
        if try await account(named: username) != nil {
            throw StoreError(.conflict, "the name \"\(username)\" is taken")
        }
        let account = Account(id: UUID().uuidString.lowercased(), username: username, kind: kind, name: nil, isAdmin: isAdmin, createdAt: Timestamp.now())
        try await sql.raw("""
            INSERT INTO accounts (id, username, kind, password_hash, is_admin, created_at)
            VALUES (\(bind: account.id), \(bind: username), \(bind: kind.rawValue), \(bind: passwordHash), \(bind: isAdmin), \(bind: account.createdAt))
            """).run()
        return account
    }

    public func account(named username: String) async throws -> Account? {
        try await sql.raw("SELECT id, username, kind, name, is_admin, created_at FROM accounts WHERE username = \(bind: username)")
            .first(decoding: Account.self)
    }

    public func account(id: String) async throws -> Account? {
        try await sql.raw("SELECT id, username, kind, name, is_admin, created_at FROM accounts WHERE id = \(bind: id)")
            .first(decoding: Account.self)
    }

    /// Checks a password against its bcrypt hash.
    public func verifyPassword(username: String, password: String) async throws -> Account? {
        struct Row: Decodable { var password_hash: String? }
        let row = try await sql.raw("""
            SELECT password_hash FROM accounts WHERE username = \(bind: username) AND kind = 'user' AND disabled_at IS NULL
            """).first(decoding: Row.self)
        // An unknown user (or one without a password) costs the same bcrypt as a known one, so
        // the answer's timing does not tell which usernames exist.
        let hash = row?.password_hash
        let matches = try await onOwnThread { Bcrypt.verify(password, hash: hash ?? Self.decoyHash) }
        guard matches, row?.password_hash != nil else { return nil }
        return try await account(named: username)
    }

    /// A bcrypt hash of a random password at the cost real ones use.
    static let decoyHash = Bcrypt.hash(UUID().uuidString, cost: 10)

    /// A password's bcrypt hash. Bcrypt takes tens of milliseconds on purpose: it runs on a thread
    /// of its own, never on the thread that serves HTTP (routes run on the server's one loop).
    static func passwordHash(_ password: String) async throws -> String {
        try await onOwnThread { Bcrypt.hash(password, cost: 10) }
    }

    // MARK: - Operators' user administration (`lathe admin user …`)

    /// One user as an operator sees it.
    public struct UserSummary: Sendable, Decodable {
        public var username: String
        public var isAdmin: Bool
        public var hasPassword: Bool
        public var disabledAt: String?
        public var models: Int
        public var tokens: Int
        public var createdAt: String

        package enum CodingKeys: String, CodingKey {
            case username, models, tokens
            case isAdmin = "is_admin", hasPassword = "has_password", disabledAt = "disabled_at", createdAt = "created_at"
        }
    }

    /// Every user, by name, with what they own.
    public func users() async throws -> [UserSummary] {
        try await sql.raw("""
            SELECT a.username, a.is_admin, (a.password_hash IS NOT NULL) AS has_password, a.disabled_at, a.created_at,
              (SELECT COUNT(*) FROM models m WHERE m.owner_id = a.id) AS models,
              (SELECT COUNT(*) FROM tokens t WHERE t.user_id = a.id AND t.revoked_at IS NULL) AS tokens
            FROM accounts a WHERE a.kind = 'user' ORDER BY a.username
            """).all(decoding: UserSummary.self)
    }

    /// The user named `username`, or a sentence saying there is none.
    public func user(named username: String) async throws -> Account {
        guard let user = try await account(named: username), user.kind == .user else {
            throw StoreError(.notFound, "there is no user named \(username); `lathe admin user list` lists them")
        }
        return user
    }

    /// Sets the user's web password (at least 8 characters).
    public func setPassword(_ user: Account, password: String) async throws {
        guard password.count >= 8 else { throw StoreError(.invalid, "the password is shorter than 8 characters; choose a longer one") }
        let hash = try await Self.passwordHash(password)
        try await sql.raw("UPDATE accounts SET password_hash = \(bind: hash) WHERE id = \(bind: user.id)").run()
        try await accountsChanged()
    }

    /// Disables or enables a user. A disabled user's tokens and web sessions stop working at
    /// once (sessions end; tokens are refused while disabled and work again when enabled).
    public func setDisabled(_ user: Account, _ disabled: Bool) async throws {
        try await sql.raw("UPDATE accounts SET disabled_at = \(bind: disabled ? Timestamp.now() : nil) WHERE id = \(bind: user.id)").run()
        if disabled { try await sql.raw("DELETE FROM sessions WHERE user_id = \(bind: user.id)").run() }
        try await accountsChanged()
    }

    public func setAdmin(_ user: Account, _ isAdmin: Bool) async throws {
        try await sql.raw("UPDATE accounts SET is_admin = \(bind: isAdmin) WHERE id = \(bind: user.id)").run()
        try await accountsChanged()
    }

    /// Deletes a user with their tokens, sessions and memberships; refused while they own
    /// models or are the only owner of an organization (their work would be left without one).
    public func deleteUser(_ user: Account) async throws {
        struct Count: Decodable { var count: Int }
        let models = try await sql.raw("SELECT COUNT(*) AS count FROM models WHERE owner_id = \(bind: user.id)").first(decoding: Count.self)?.count ?? 0
        guard models == 0 else {
            throw StoreError(.conflict, "\(user.username) owns \(models) model\(models == 1 ? "" : "s"); delete them first (`DELETE /v1/models/\(user.username)/NAME`) or disable the user instead")
        }
        struct Organization: Decodable { var username: String }
        let soleOwner = try await sql.raw("""
            SELECT o.username FROM memberships m JOIN accounts o ON o.id = m.organization_id
            WHERE m.user_id = \(bind: user.id) AND m.role = 'owner'
              AND NOT EXISTS (SELECT 1 FROM memberships x WHERE x.organization_id = m.organization_id AND x.role = 'owner' AND x.user_id <> \(bind: user.id))
            """).all(decoding: Organization.self)
        guard soleOwner.isEmpty else {
            throw StoreError(.conflict, "\(user.username) is the only owner of \(soleOwner.map(\.username).joined(separator: ", ")); give it another owner first")
        }
        try await database.transaction { sql in
            for table in ["tokens", "sessions", "memberships"] {
                try await sql.raw("DELETE FROM \(unsafeRaw: table) WHERE user_id = \(bind: user.id)").run()
            }
            try await sql.raw("DELETE FROM webhook_secrets WHERE account_id = \(bind: user.id)").run()
            try await sql.raw("DELETE FROM accounts WHERE id = \(bind: user.id)").run()
        }
        try await accountsChanged()
    }

    /// Drops cached tokens here and tells every server on this database (they poll the counter
    /// each second), whichever process made the change.
    private func accountsChanged() async throws {
        try await sql.raw("UPDATE change_counters SET value = value + 1 WHERE name = 'accounts'").run()
        caches.changed()
    }

    /// The accounts change counter (servers clear their caches when it moves).
    public func changeCounter() async throws -> Int64 {
        struct Row: Decodable { var value: Int64 }
        return try await sql.raw("SELECT value FROM change_counters WHERE name = 'accounts'").first(decoding: Row.self)?.value ?? 0
    }

    // MARK: - Memberships

    public func setMember(_ organization: Account, user: Account, role: String) async throws {
        guard organization.kind == .organization, user.kind == .user else {
            throw StoreError(.invalid, "members are users, added to organizations")
        }
        guard role == "owner" || role == "member" else { throw StoreError(.invalid, "role must be owner or member") }
        try await sql.raw("""
            INSERT INTO memberships (organization_id, user_id, role) VALUES (\(bind: organization.id), \(bind: user.id), \(bind: role))
            ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role
            """).run()
        caches.changed()
    }

    public func removeMember(_ organization: Account, user: Account) async throws {
        try await sql.raw("DELETE FROM memberships WHERE organization_id = \(bind: organization.id) AND user_id = \(bind: user.id)").run()
        caches.changed()
    }

    /// Members of an organization with their roles.
    public func members(_ organization: Account) async throws -> [(Account, String)] {
        struct Row: Decodable { var user_id: String; var role: String }
        var result: [(Account, String)] = []
        for row in try await sql.raw("SELECT user_id, role FROM memberships WHERE organization_id = \(bind: organization.id) ORDER BY user_id")
            .all(decoding: Row.self) {
            if let account = try await account(id: row.user_id) { result.append((account, row.role)) }
        }
        return result
    }

    public func role(of user: Account, in organization: Account) async throws -> String? {
        struct Row: Decodable { var role: String }
        return try await sql.raw("SELECT role FROM memberships WHERE organization_id = \(bind: organization.id) AND user_id = \(bind: user.id)")
            .first(decoding: Row.self)?.role
    }

    // MARK: - Tokens

    /// Creates a token; the returned secret is never stored, only its SHA-256.
    public func createToken(for user: Account, label: String) async throws -> (secret: String, record: TokenRecord) {
        guard user.kind == .user else { throw StoreError(.invalid, "tokens belong to users, not organizations") }
        // 40 characters from a 62-letter alphabet (~238 bits), drawn from the system's CSPRNG.
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var generator = SystemRandomNumberGenerator()
        let secret = "lat_" + String((0..<40).map { _ in alphabet.randomElement(using: &generator)! })
        let record = TokenRecord(id: UUID().uuidString.lowercased(), label: label, createdAt: Timestamp.now())
        try await sql.raw("""
            INSERT INTO tokens (id, user_id, label, token_hash, created_at)
            VALUES (\(bind: record.id), \(bind: user.id), \(bind: label), \(bind: Self.hash(secret)), \(bind: record.createdAt))
            """).run()
        return (secret, record)
    }

    public func tokens(for user: Account) async throws -> [TokenRecord] {
        try await sql.raw("SELECT id, label, created_at, last_used_at, revoked_at FROM tokens WHERE user_id = \(bind: user.id) ORDER BY created_at")
            .all(decoding: TokenRecord.self)
    }

    /// Revokes one of `user`'s tokens; false when there is no such token.
    public func revokeToken(_ id: String, of user: Account) async throws -> Bool {
        let existing = try await tokens(for: user).first { $0.id == id && $0.revokedAt == nil }
        guard existing != nil else { return false }
        try await sql.raw("UPDATE tokens SET revoked_at = \(bind: Timestamp.now()) WHERE id = \(bind: id) AND user_id = \(bind: user.id)").run()
        caches.changed()
        return true
    }

    /// The principal a token stands for, or nil for an unknown or revoked token. Looked up by
    /// its hash, so the secret is never compared or kept.
    public func authenticate(token: String) async throws -> Principal? {
        let key = Self.hash(token)
        let now = Timestamp.now()
        if let hit = caches.tokens.get(key) {
            // Last-used time to the minute: enough for the account page, without a write per request.
            if hit.lastUsedAt.map({ $0.prefix(16) != now.prefix(16) }) ?? true {
                try await sql.raw("UPDATE tokens SET last_used_at = \(bind: now) WHERE id = \(bind: hit.tokenID)").run()
                caches.tokens.set(key, .init(tokenID: hit.tokenID, principal: hit.principal, lastUsedAt: now))
            }
            return hit.principal
        }
        // One query otherwise: the token, its user and the user's organizations.
        struct Row: Decodable {
            var token_id: String
            var last_used_at: String?
            var id: String
            var username: String
            var kind: Account.Kind
            var name: String?
            var is_admin: Bool
            var created_at: String
            var organizations: String?
        }
        guard let row = try await sql.raw("""
            SELECT t.id AS token_id, t.last_used_at, a.id, a.username, a.kind, a.name, a.is_admin, a.created_at,
              (SELECT \(unsafeRaw: sql.commaJoined("m.organization_id")) FROM memberships m WHERE m.user_id = a.id) AS organizations
            FROM tokens t JOIN accounts a ON a.id = t.user_id
            WHERE t.token_hash = \(bind: key) AND t.revoked_at IS NULL AND a.disabled_at IS NULL
            """).first(decoding: Row.self) else { return nil }
        var lastUsed = row.last_used_at
        if lastUsed.map({ $0.prefix(16) != now.prefix(16) }) ?? true {
            try await sql.raw("UPDATE tokens SET last_used_at = \(bind: now) WHERE id = \(bind: row.token_id)").run()
            lastUsed = now
        }
        let user = Account(id: row.id, username: row.username, kind: row.kind, name: row.name, isAdmin: row.is_admin, createdAt: row.created_at)
        let organizations = Set((row.organizations ?? "").split(separator: ",").map(String.init))
        let principal = Principal(user: user, organizationIDs: organizations)
        caches.tokens.set(key, .init(tokenID: row.token_id, principal: principal, lastUsedAt: lastUsed))
        return principal
    }

    public func principal(for user: Account) async throws -> Principal {
        struct Row: Decodable { var organization_id: String }
        let organizations = try await sql.raw("SELECT organization_id FROM memberships WHERE user_id = \(bind: user.id)").all(decoding: Row.self)
        return Principal(user: user, organizationIDs: Set(organizations.map(\.organization_id)))
    }

    package static func hash(_ token: String) -> String {
        ByteEncoding.hex(SHA256.hash(data: Data(token.utf8)))
    }
}
