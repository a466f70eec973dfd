import Foundation
import Logging
import Testing
@testable import LatheCore
@testable import LatheStore
import LatheTestSupport

/// The stores' behaviour, one suite for every database behind them (as distribution's storage
/// driver suite runs against every driver): SQLite always, PostgreSQL when `LATHE_TEST_POSTGRES`
/// names a server (scripts/test starts one; CI always has it).
@Suite("StoreSuite: every store on SQLite and PostgreSQL", .serialized)
struct StoreSuiteTests {
    enum Backend: String, CustomTestStringConvertible, CaseIterable {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    /// The backends configured here: SQLite always, PostgreSQL with `LATHE_TEST_POSTGRES`.
    static let backends = Backend.allCases.filter { $0 == .sqlite || Backends.postgres }

    /// A fresh, migrated database of `backend`.
    static func open(_ backend: Backend) async throws -> RegistryDatabase {
        try await openWithURL(backend).database
    }

    /// A fresh, migrated database and, on PostgreSQL, its URL (for a second connection).
    static func openWithURL(_ backend: Backend) async throws -> (database: RegistryDatabase, url: String?) {
        var logger = Logger(label: "store-suite")
        logger.logLevel = .error
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-store-\(UUID().uuidString)")
        switch backend {
        case .sqlite:
            return (try await RegistryDatabase.open(url: nil, data: folder, logger: logger), nil)
        case .postgres:
            let url = try #require(try TestDatabase.databaseURL(forData: folder.path), "PostgreSQL runs only where it is configured")
            return (try await RegistryDatabase.open(url: url, data: folder, logger: logger), url)
        }
    }

    @Test("PostgreSQL is configured", .enabled(if: Backends.postgres || Backends.required,
                                               "PostgreSQL is not configured (set LATHE_TEST_POSTGRES, as scripts/test does): its cases are skipped"))
    func postgresConfigured() {
        #expect(Backends.postgres, "PostgreSQL is not configured, and every backend must run here (CI=true or LATHE_TEST_REQUIRE_BACKENDS=1)")
    }

    @Test("migrations are recorded once and opening again changes nothing", arguments: backends)
    func migrations(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        struct Row: Decodable { var version: Int }
        let first = try await database.sql.raw("SELECT version FROM schema_migrations ORDER BY version").all(decoding: Row.self).map(\.version)
        #expect(first == RegistryDatabase.migrations.map(\.version))
        #expect(database.kind.rawValue == backend.rawValue)
    }

    @Test("accounts, organizations and tokens", arguments: backends)
    func accounts(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database)
        let alice = try await accounts.createUser("alice", password: "correct horse")
        let bob = try await accounts.createUser("bob", password: nil)
        await #expect(throws: StoreError.self) { try await accounts.createUser("alice", password: nil) }
        let acme = try await accounts.createOrganization("acme", owner: alice)
        try await accounts.setMember(acme, user: bob, role: "member")
        #expect(try await accounts.role(of: bob, in: acme) == "member")
        #expect(try await accounts.verifyPassword(username: "alice", password: "correct horse")?.id == alice.id)
        #expect(try await accounts.verifyPassword(username: "alice", password: "wrong") == nil)
        #expect(try await accounts.verifyPassword(username: "nobody", password: "x") == nil)

        let (secret, record) = try await accounts.createToken(for: bob, label: "ci")
        let principal = try #require(try await accounts.authenticate(token: secret))
        #expect(principal.user.id == bob.id && principal.organizationIDs == [acme.id], "one query joins the user's organizations")
        #expect(try await accounts.revokeToken(record.id, of: bob))
        #expect(try await accounts.authenticate(token: secret) == nil, "revoked at once")
        try await accounts.removeMember(acme, user: bob)
        #expect(try await accounts.principal(for: bob).organizationIDs.isEmpty)
    }

    @Test("models: visibility is part of every query, versions, tags, blobs, uploads", arguments: backends)
    func models(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database), models = ModelStore(database: database)
        let alice = try await accounts.createUser("alice", password: nil)
        let bob = try await accounts.createUser("bob", password: nil)
        let secret = try await models.createModel(owner: alice, name: "secret", visibility: "private", description: "hidden", license: nil)
        _ = try await models.createModel(owner: alice, name: "open", visibility: "public", description: "for all", license: "MIT")
        let asAlice = try await accounts.principal(for: alice), asBob = try await accounts.principal(for: bob)
        #expect(try await models.model(owner: "alice", name: "secret", viewer: asBob) == nil)
        #expect(try await models.model(owner: "alice", name: "secret", viewer: asAlice)?.id == secret.id)
        #expect(try await models.list(viewer: asBob, publicOnly: false, after: nil, limit: 10).map(\.name) == ["open"])
        #expect(Set(try await models.list(viewer: asAlice, owner: "alice", publicOnly: false, after: nil, limit: 10).map(\.name)) == ["open", "secret"])
        #expect(try await models.list(viewer: nil, search: "HIDDEN", publicOnly: false, after: nil, limit: 10).isEmpty)

        let digest = "sha256:" + String(repeating: "a", count: 64)
        try await models.addBlob(digest, size: 5_000_000_000, repository: "alice/secret")
        #expect(try await models.blob(digest, repository: "alice/secret") == 5_000_000_000, "sizes past 32 bits")
        #expect(try await models.blob(digest, repository: "alice/open") == nil)
        try await models.linkBlob(digest, repository: "alice/open")
        #expect(try await models.blob(digest, repository: "alice/open") != nil)
        try await models.addManifest(repository: "alice/secret", digest: digest, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 10)
        try await models.setTag(repository: "alice/secret", tag: "latest", digest: digest)
        try await models.setTag(repository: "alice/secret", tag: "latest", digest: digest)
        #expect(try await models.tags(repository: "alice/secret", after: nil, limit: 10) == ["latest"])
        try await models.addVersion(secret, id: String(repeating: "b", count: 64), manifestDigest: digest, openapiSchema: "{}")
        #expect(try await models.versions(of: secret).count == 1)
        #expect(try await models.findVersion(String(repeating: "b", count: 64), viewer: asBob) == nil)
        // Storage an owner's blobs take: each digest once however many repositories hold it; a
        // name with '_' (a LIKE wildcard) does not count another owner's blobs.
        #expect(try await models.storageUsed(byOwner: "alice") == 5_000_000_000)
        #expect(try await models.storageUsed(byOwner: "bob") == 0)
        _ = try await accounts.createUser("a_ice", password: nil)
        #expect(try await models.storageUsed(byOwner: "a_ice") == 0)
        try await models.createUpload(id: "u1", repository: "alice/secret", userID: alice.id)
        #expect(try await models.uploadExists(id: "u1", repository: "alice/secret"))
        // One writer at a time: a second claim waits for the release or the lease's end.
        #expect(try await models.claimUploadWriter(id: "u1", writer: "w1", until: Date().addingTimeInterval(60)))
        #expect(try await !models.claimUploadWriter(id: "u1", writer: "w2", until: Date().addingTimeInterval(60)))
        try await models.releaseUploadWriter(id: "u1", writer: "w2")
        #expect(try await !models.claimUploadWriter(id: "u1", writer: "w2", until: Date().addingTimeInterval(60)), "only the holder releases")
        try await models.releaseUploadWriter(id: "u1", writer: "w1")
        #expect(try await models.claimUploadWriter(id: "u1", writer: "w2", until: Date().addingTimeInterval(-1)))
        #expect(try await models.claimUploadWriter(id: "u1", writer: "r-1:w3", until: Date().addingTimeInterval(60)), "an expired lease is taken over")
        try await models.releaseUploadWriters(heldBy: "r-2")
        #expect(try await !models.claimUploadWriter(id: "u1", writer: "w4", until: Date().addingTimeInterval(60)), "another replica's restart frees nothing")
        try await models.releaseUploadWriters(heldBy: "r-1")
        #expect(try await models.claimUploadWriter(id: "u1", writer: "w4", until: Date().addingTimeInterval(60)), "the holder's replica restarted")
        try await models.deleteUpload(id: "u1")
        #expect(try await !models.uploadExists(id: "u1", repository: "alice/secret"))
        // Garbage collection: the manifests are the roots; a blob a push touched after the
        // cutoff is not forgotten, an untouched one is (with its repository links).
        #expect(try await models.manifestDigests() == [digest])
        #expect(try await models.manifestDigests(since: "9999").isEmpty)
        #expect(try await !models.forgetBlob(digest, untouchedSince: "2000-01-01T00:00:00.000Z"), "touched just now")
        #expect(try await models.blob(digest, repository: "alice/open") != nil)
        try await models.touchBlob(digest)  // within 10 minutes of the last touch: no write, no change
        #expect(try await models.forgetBlob(digest, untouchedSince: Timestamp.string(Date().addingTimeInterval(60))))
        #expect(try await models.blob(digest, repository: "alice/open") == nil)
        try await models.deleteModel(secret)
        #expect(try await models.model(owner: "alice", name: "secret", viewer: asAlice) == nil)
    }

    @Test("trainings: the configs they run under are versions no listing shows, and their rows list apart from predictions", arguments: backends)
    func trainings(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database), models = ModelStore(database: database), store = PredictionStore(database: database)
        let alice = try await accounts.createUser("alice", password: nil)
        let asAlice = try await accounts.principal(for: alice)
        let model = try await models.createModel(owner: alice, name: "tunable", visibility: "public", description: nil, license: nil)
        let base = String(repeating: "b", count: 64), derived = String(repeating: "d", count: 64)
        let baseManifest = "sha256:" + String(repeating: "1", count: 64), derivedManifest = "sha256:" + String(repeating: "2", count: 64)
        try await models.addManifest(repository: model.repository, digest: baseManifest, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 10)
        try await models.addManifest(repository: model.repository, digest: derivedManifest, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 10)
        try await models.addVersion(model, id: base, manifestDigest: baseManifest, openapiSchema: "{}")
        try await models.addVersion(model, id: derived, manifestDigest: derivedManifest, openapiSchema: "{}", trainingOf: base)
        #expect(try await models.versions(of: model).map(\.id) == [base])
        #expect(try await models.latestVersion(of: model)?.id == base)
        #expect(try await models.version(of: model, id: derived) == nil)
        #expect(try await models.findVersion(derived, viewer: asAlice) == nil)
        #expect(try await models.manifestDigest(modelID: model.id, version: derived) == derivedManifest, "the scheduler finds it by id")

        var training = PredictionRecord(id: "t" + String(repeating: "a", count: 25), modelID: model.id, model: model.repository, version: derived,
                                        creatorID: alice.id, source: "api", status: .starting, input: "{}", logs: "", createdAt: Timestamp.now(),
                                        dataRemoved: false, shared: false)
        let order = TrainingOrder(baseVersion: base, destinationID: "m2", destination: "alice/tuned")
        training.training = String(decoding: try JSONEncoder().encode(order), as: UTF8.self)
        try await store.insert(training)
        var prediction = training
        prediction.id = "p" + String(repeating: "a", count: 25)
        prediction.training = nil
        try await store.insertFinished(prediction, checkSafety: true)
        #expect(try await store.prediction(training.id)?.trainingOrder == order)
        #expect(try await store.list(viewer: asAlice, trainings: true, after: nil, createdAfter: nil, createdBefore: nil, limit: 10).map(\.id) == [training.id])
        #expect(try await store.list(viewer: asAlice, after: nil, createdAfter: nil, createdBefore: nil, limit: 10).map(\.id) == [prediction.id])
        #expect(try await store.dashboard(account: alice.id, status: nil, model: nil, after: nil, limit: 10).map(\.id) == [prediction.id])

        // The trained version goes with the configs its trainings ran under.
        try await models.deleteVersion(model, id: base)
        #expect(try await models.manifestDigest(modelID: model.id, version: derived) == nil)
        #expect(try await models.manifest(repository: model.repository, digest: derivedManifest) == nil)
        #expect(try await models.manifest(repository: model.repository, digest: baseManifest) != nil, "the route deletes the version's own manifest")
    }

    @Test("readmes: a push's README.md is taken until the readme is edited by hand", arguments: backends)
    func readmes(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database), models = ModelStore(database: database)
        let alice = try await accounts.createUser("alice", password: nil)
        let created = try await models.createModel(owner: alice, name: "m", visibility: "public", description: nil, license: nil)
        #expect(try await models.pushedReadme("one", model: created) == .adopted)
        #expect(try await models.pushedReadme("one", model: created) == .unchanged)
        #expect(try await models.pushedReadme("two", model: created) == .updated)
        var model = try #require(try await models.anyModel(owner: "alice", name: "m"))
        model.description = "settings saved, readme untouched"
        try await models.updateModel(model)
        #expect(try await models.pushedReadme("three", model: model) == .updated)
        model = try #require(try await models.anyModel(owner: "alice", name: "m"))
        model.readme = "edited by hand"
        try await models.updateModel(model)
        #expect(try await models.pushedReadme("four", model: model) == .kept)
        #expect(try await models.anyModel(owner: "alice", name: "m")?.readme == "edited by hand")
        model.readme = nil
        try await models.updateModel(model)
        #expect(try await models.pushedReadme("five", model: model) == .adopted)
    }

    @Test("webhook deliveries: recorded once, claimed by one replica at a time, retried, delivered or abandoned", arguments: backends)
    func webhookDeliveries(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let store = WebhookDeliveryStore(database: database)
        let start = Date()
        func delivery(_ id: String, prediction: String = "p1") -> WebhookDelivery {
            WebhookDelivery(id: id, predictionID: prediction, event: "completed", url: "http://h/hook", accountID: "a", body: "{}",
                            status: .pending, attempts: 0, nextAt: Timestamp.string(start), createdAt: Timestamp.string(start))
        }
        try await store.enqueue(delivery("m1"))
        try await store.enqueue(delivery("m1"))  // the same message again: ignored
        try await store.enqueue(delivery("m2", prediction: "p2"))
        #expect(try await store.deliveries(of: "p1").map(\.id) == ["m1"])
        // One replica takes what is due; another finds nothing while the claims hold.
        let taken = try await store.claim(replica: "r1", limit: 10, now: start)
        #expect(Set(taken.map(\.id)) == ["m1", "m2"])
        #expect(try await store.claim(replica: "r2", limit: 10, now: start.addingTimeInterval(1)).isEmpty)
        // A failed attempt is due again later, and counted; only the claim holder records it.
        try await store.failed("m1", replica: "r2", error: "not mine", next: start.addingTimeInterval(2))
        #expect(try await store.deliveries(of: "p1").first?.attempts == 0)
        try await store.failed("m1", replica: "r1", error: "the receiver answered 500", next: start.addingTimeInterval(2))
        #expect(try await store.claim(replica: "r2", limit: 10, id: "m1", now: start.addingTimeInterval(1)).isEmpty)
        let again = try await store.claim(replica: "r2", limit: 10, id: "m1", now: start.addingTimeInterval(3))
        #expect(again.map(\.id) == ["m1"] && again.first?.attempts == 1 && again.first?.lastError == "the receiver answered 500")
        try await store.delivered("m1", replica: "r2")
        #expect(try await store.deliveries(of: "p1").first?.status == .delivered)
        // A claim whose holder died lapses; a restarted replica frees its own at once.
        #expect(try await store.claim(replica: "r3", limit: 10, now: start.addingTimeInterval(WebhookDeliveryStore.lease + 1)).map(\.id) == ["m2"])
        try await store.releaseClaims(heldBy: "r3")
        #expect(try await store.claim(replica: "r1", limit: 10, now: start.addingTimeInterval(WebhookDeliveryStore.lease + 2)).map(\.id) == ["m2"])
        try await store.failed("m2", replica: "r1", error: "gone", next: nil)
        #expect(try await store.deliveries(of: "p2").first?.status == .abandoned)
        #expect(try await store.claim(replica: "r1", limit: 10, now: start.addingTimeInterval(7200)).isEmpty)
        try await store.removeFinished(before: Date().addingTimeInterval(60))
        #expect(try await store.deliveries(of: "p1").isEmpty)
        #expect(try await store.deliveries(of: "p2").isEmpty)
    }

    @Test("webhook retries: 1 s, 2 s, 4 s … never more than a minute apart, for an hour")
    func webhookRetryPolicy() {
        let policy = Webhooks.RetryPolicy(), created = Date()
        let waits = (1...9).map { policy.next(afterFailures: $0, createdAt: created, now: created)!.timeIntervalSince(created) }
        #expect(waits == [1, 2, 4, 8, 16, 32, 60, 60, 60])
        #expect(policy.next(afterFailures: 60, createdAt: created, now: created.addingTimeInterval(3599)) != nil)
        #expect(policy.next(afterFailures: 61, createdAt: created, now: created.addingTimeInterval(3600)) == nil)
    }

    @Test("predictions: insert, visibility, progress, completion, sharing, retention", arguments: backends)
    func predictions(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database), store = PredictionStore(database: database)
        let alice = try await accounts.createUser("alice", password: nil)
        let bob = try await accounts.createUser("bob", password: nil)
        let record = PredictionRecord(id: "p" + String(repeating: "a", count: 25), modelID: "m", model: "alice/hello", version: "v", creatorID: alice.id,
                                      source: "api", status: .starting, input: #"{"text":"hi"}"#, output: nil, error: nil, logs: "",
                                      metrics: nil, createdAt: Timestamp.now(), startedAt: nil, completedAt: nil, dataRemoved: false, shared: false,
                                      webhook: nil, webhookEventsFilter: nil, accountID: nil)
        try await store.insert(record)
        let asBob = try await accounts.principal(for: bob), asAlice = try await accounts.principal(for: alice)
        #expect(try await store.prediction(record.id, viewer: asBob) == nil)
        #expect(try await store.prediction(record.id, viewer: asAlice)?.status == .starting)
        try await store.setStartingLogs(record.id, logs: "building…")
        #expect(try await store.snapshot(record.id)?.seq == 0)
        try await store.updateProgress(record.id, output: #"["a"]"#, logs: "log", delta: .init(output: [.string("a")], logs: "log"), startedAt: Timestamp.now())
        #expect(try await store.prediction(record.id)?.status == .processing)
        // The row and its newest event are read together; the events after it are the deltas.
        let (row, seq) = try #require(try await store.snapshot(record.id))
        #expect(row.output == #"["a"]"# && seq > 0)
        try await store.updateProgress(record.id, output: #"["a","b"]"#, logs: "log\nmore", delta: .init(output: [.string("b")], logs: "\nmore"),
                                       startedAt: Timestamp.now())
        // A write from a claim that is not the prediction's changes nothing and logs nothing.
        try await store.updateProgress(record.id, output: #"["x"]"#, logs: "x", delta: .init(output: [.string("x")], logs: "x"),
                                       startedAt: Timestamp.now(), claim: "someone-else")
        try await store.complete(record.id, status: .succeeded, output: #""done""#, error: nil, logs: "log", metrics: "{}")
        let changes = try await store.changes(of: record.id, after: seq)
        #expect(changes.map(\.kind) == [.progress, .done])
        #expect(changes.first?.items == [.string("b")] && changes.first?.logs == "\nmore")
        #expect(try await store.changes(of: record.id, after: changes[1].seq).isEmpty)
        // A second completion is refused and logs no second `done`.
        #expect(try await store.complete(record.id, status: .failed, output: nil, error: "late", logs: "", metrics: "{}") == false)
        #expect(try await store.changes(of: record.id, after: seq).count == 2)
        let done = try #require(try await store.prediction(record.id))
        #expect(done.status == .succeeded && done.output == #""done""# && done.completedAt != nil)
        #expect(try await store.list(viewer: asAlice, after: nil, createdAfter: nil, createdBefore: nil, limit: 10).map(\.id) == [record.id])
        #expect(try await store.runCounts()["m"] == 1)
        for expired in try await store.expired(before: "9999") { try await store.removeData(expired.id) }
        let removed = try #require(try await store.prediction(record.id))
        #expect(removed.dataRemoved && removed.input == nil && removed.output == nil)
        #expect(try await store.changes(of: record.id, after: 0).isEmpty)
        try await store.share(record.id)
        #expect(try await store.prediction(record.id, viewer: asBob)?.shared == true)
        #expect(try await store.expired(before: "9999").isEmpty, "shared predictions keep their data")
        try await store.delete(record.id)
        #expect(try await store.prediction(record.id) == nil)
    }

    @Test("output files: indexed by token when a prediction finishes, forgotten with its data or the prediction", arguments: backends)
    func outputFiles(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let alice = try await AccountStore(database: database).createUser("alice", password: nil)
        let store = PredictionStore(database: database)
        let (a, b, c, d) = (String(repeating: "a", count: 48), String(repeating: "b", count: 48), String(repeating: "c", count: 48), String(repeating: "d", count: 48))
        func record(_ id: String) -> PredictionRecord {
            PredictionRecord(id: id, modelID: "m", model: "alice/hello", version: "v", creatorID: alice.id, source: "api", status: .starting,
                             input: "{}", output: nil, error: nil, logs: "", metrics: nil, createdAt: Timestamp.now(), startedAt: nil, completedAt: nil,
                             dataRemoved: false, shared: false, webhook: nil, webhookEventsFilter: nil, accountID: nil)
        }
        let first = record("p" + String(repeating: "1", count: 25)), second = record("p" + String(repeating: "2", count: 25))
        try await store.insert(first)
        try await store.insert(second)
        // Nested anywhere in the output, under any base URL.
        try await store.complete(first.id, status: .succeeded, output: #"{"images":["http://old-host/files/\#(a)/x.png"],"mask":"https://r.example/files/\#(b)/m.png"}"#,
                                 error: nil, logs: "", metrics: "{}")
        try await store.complete(second.id, status: .succeeded, output: #""http://h/files/\#(c)/y.txt""#, error: nil, logs: "", metrics: "{}")
        // A late second completion writes nothing, and indexes nothing.
        #expect(try await store.complete(second.id, status: .failed, output: #""http://h/files/\#(d)/z.txt""#, error: nil, logs: "", metrics: "{}") == false)
        #expect(try await store.referencedOutputTokens([a, b, c, d, "e"]) == [a, b, c])
        // Outputs written before the index existed are indexed by its migration (the one full read).
        try await database.sql.raw("DELETE FROM output_files").run()
        #expect(try await store.referencedOutputTokens([a, b, c]).isEmpty)
        let migration = try #require(RegistryDatabase.migrations.first { $0.version == 14 })
        try await migration.run(database.sql, database.kind)
        #expect(try await store.referencedOutputTokens([a, b, c, d, "e"]) == [a, b, c])
        try await store.removeData(first.id)
        #expect(try await store.referencedOutputTokens([a, b, c]) == [c])
        try await store.delete(second.id)
        #expect(try await store.referencedOutputTokens([a, b, c]).isEmpty)
        // Lookups go in batches: more tokens than one statement's binds.
        #expect(try await store.referencedOutputTokens((0..<1200).map { String(format: "%048x", $0) }).isEmpty)
    }

    @Test("sign-in attempts: 10 in any minute, refused ones not kept, failures until a success", arguments: backends)
    func signinAttempts(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let store = SigninAttemptStore(database: database)
        let start = Date()
        for second in 0..<10 {
            let (allowed, oldest, _) = try await store.attempt("k", limit: 10, now: start.addingTimeInterval(Double(second)))
            #expect(allowed && oldest.map { abs($0.timeIntervalSince(start)) < 0.01 } == true)
            try await store.failed("k", now: start.addingTimeInterval(Double(second)))
        }
        let refused = try await store.attempt("k", limit: 10, now: start.addingTimeInterval(30))
        #expect(!refused.allowed && refused.failures == 10)
        #expect(try await store.attempt("other", limit: 10, now: start.addingTimeInterval(30)).allowed, "per key")
        // The window slides: at 60.5 s the first attempt has left it (the refused one was not kept).
        #expect(try await store.attempt("k", limit: 10, now: start.addingTimeInterval(60.5)).allowed)
        try await store.succeeded("k")
        #expect(try await store.attempt("k", limit: 10, now: start.addingTimeInterval(62)).failures == 0)
        try await store.removeOld(before: Timestamp.string(start.addingTimeInterval(1000)))
        #expect(try await store.attempt("k", limit: 10, now: start.addingTimeInterval(1000)).oldest.map { $0 > start.addingTimeInterval(999) } == true)
    }

    @Test("files, quotas and expiry; deployments' warm sum; sessions; webhook secrets", arguments: backends)
    func filesSessionsAndSecrets(_ backend: Backend) async throws {
        let database = try await Self.open(backend)
        defer { Task { try? await database.close() } }
        let accounts = AccountStore(database: database)
        let alice = try await accounts.createUser("alice", password: nil)
        let old = FileRecord(id: "f1", ownerID: alice.id, name: "a.bin", contentType: "application/octet-stream", size: 3_000_000_000,
                             sha256: "x", metadata: "{}", createdAt: "2000-01-01T00:00:00.000Z", expiresAt: "2000-01-02T00:00:00.000Z")
        let files = FileStore(database: database)
        try await files.insert(old)
        try await files.insert(.init(id: "f2", ownerID: alice.id, name: "b.bin", contentType: "text/plain", size: 2_000_000_000, sha256: "y",
                                     metadata: "{}", now: Date()))
        #expect(try await files.used(by: alice.id) == 5_000_000_000, "SUM over BIGINT decodes on both")
        #expect(try await files.expired(before: Timestamp.now()) == ["f1"])
        #expect(try await files.file("f2", owner: "someone else") == nil)
        try await files.delete("f1")
        #expect(try await files.used(by: alice.id) == 2_000_000_000)

        let deployments = DeploymentStore(database: database)
        for (index, minimum) in [2, 1].enumerated() {
            try await deployments.insert(.init(id: "d\(index)", ownerID: alice.id, name: "dep\(index)", modelID: "m", version: "v", hardware: "cpu",
                                               minInstances: minimum, maxInstances: 3, release: 1, createdBy: alice.id, createdAt: Timestamp.now()))
        }
        await #expect(throws: StoreError.self) {
            try await deployments.insert(.init(id: "d9", ownerID: alice.id, name: "dep0", modelID: "m", version: "v", hardware: "cpu",
                                               minInstances: 0, maxInstances: 1, release: 1, createdBy: alice.id, createdAt: Timestamp.now()))
        }
        #expect(try await deployments.warmInstances(owner: alice.id, excluding: nil) == 3)
        #expect(try await deployments.warmInstances(owner: alice.id, excluding: "d0") == 1)
        #expect(try await deployments.visible(to: alice.id).map(\.name) == ["dep0", "dep1"])

        let sessions = SessionStore(database: database)
        let secret = try await sessions.create(for: alice)
        let session = try #require(try await sessions.session(secret: secret))
        #expect(session.principal.user.id == alice.id)
        try await sessions.end(session)
        #expect(try await sessions.session(secret: secret) == nil)

        let webhooks = Webhooks(database: database, outbound: .init(policy: .unrestricted), replica: "r")
        let first = try await webhooks.secret(for: alice.id)
        let again = try await webhooks.secret(for: alice.id)
        #expect(first.hasPrefix("whsec_") && again == first, "created once")
    }
}
