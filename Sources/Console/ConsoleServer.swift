import AuditLog
import Digest
import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import JobQueue
import Logging
import NIOCore
import Outbox

/// Where and what the console serves.
public struct ConsoleConfiguration: Sendable {
    /// Loopback by default: a hospital network reaches it through a reverse proxy (TLS, single sign-on).
    public var bindAddress: String
    /// 0: any free port (tests; the port is reported to `onReady`).
    public var port: Int
    public var access: ConsoleAccess
    /// A read-only console (`nnseg console`): operator actions are refused.
    public var readOnly: Bool

    public init(bindAddress: String = "127.0.0.1", port: Int = 8080, access: ConsoleAccess, readOnly: Bool = false) {
        self.bindAddress = bindAddress
        self.port = port
        self.access = access
        self.readOnly = readOnly
    }
}

/// The console's HTTP server (#20): health and readiness, Prometheus metrics, and the JSON API (documented in
/// `Ops/console/openapi.yaml`) over the audit log, the shared queue and the outbox.
///
/// * `GET /healthz` (the process answers), `GET /readyz` (the audit database answers), `GET /metrics` — without
///   authentication, as monitoring scrapes them (bind to loopback or firewall the port).
/// * `/api/v1/…` — HTTP Basic against the accounts (bcrypt) or a trusted proxy's headers; 401 without, 403 when
///   the role does not allow the action. Operator actions are audit events naming the account.
///
/// Every database call runs on a dispatch queue, never on the server's threads (the PostgreSQL client blocks).
public final class ConsoleServer: Sendable {
    public let configuration: ConsoleConfiguration
    let audit: AuditLog
    let outbox: Outbox?
    let queue: JobQueue?
    let metrics: ConsoleMetrics
    let verifyState: VerifyState
    let quarantine: ConsoleQuarantine?
    /// Checks seals and receipts: the given key, else the public half of the log's signing key, if any.
    let publicKey: VerifyingKey?
    let logger: Logger
    static let work = DispatchQueue(label: "nnseg.console.database", attributes: .concurrent)

    public init(configuration: ConsoleConfiguration, audit: AuditLog, outbox: Outbox?, queue: JobQueue?,
                quarantine: ConsoleQuarantine? = nil, publicKey: VerifyingKey? = nil, logger: Logger = Logger(label: "nnseg.console")) {
        self.configuration = configuration
        self.audit = audit
        self.outbox = outbox
        self.queue = queue
        self.quarantine = quarantine
        self.publicKey = publicKey ?? audit.keys.signing?.publicKey
        self.logger = logger
        verifyState = VerifyState()
        metrics = ConsoleMetrics(audit: audit, outbox: outbox, queue: queue, verify: verifyState)
    }

    /// Serves until the process is asked to stop (SIGTERM/SIGINT: graceful shutdown). `onReady` gets the bound port.
    public func run(onReady: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(router: makeRouter(),
                              configuration: .init(address: .hostname(configuration.bindAddress, port: configuration.port), serverName: "nnseg"),
                              onServerRunning: { channel in onReady(channel.localAddress?.port ?? 0) },
                              logger: logger)
        try await app.runService()
    }

    // MARK: Routes

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: MethodNotAllowed())
        router.add(middleware: SameOriginPosts())
        router.get("healthz") { _, _ in Self.text("ok\n") }
        router.get("readyz") { _, _ in
            do {
                let cases = try await self.blocking { try self.audit.caseCounts().values.reduce(0, +) }
                return Self.json(["status": "ready", "cases": cases])
            } catch {
                return Self.json(["status": "unavailable", "error": "\(error)"], status: .serviceUnavailable)
            }
        }
        router.get("metrics") { _, _ in
            let text = try await self.blocking { try self.metrics.scrape() }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("api/v1/cases") { request, _ in
            try self.authorize(request, .auditor)
            let (query, limit, offset) = try Self.caseFilter(request, defaultLimit: 50, maximum: 500)
            let rows = try await self.blocking { try self.audit.cases(query) }
            var page: [String: Any] = ["items": rows.prefix(limit).map(Self.caseObject), "limit": limit, "offset": offset]
            if rows.count > limit { page["next_offset"] = offset + limit }
            return Self.json(page)
        }
        router.get("api/v1/cases/:id") { request, context in
            try self.authorize(request, .auditor)
            let id = context.parameters.get("id") ?? ""
            let found = try await self.blocking { () -> (AuditCase?, [AuditEvent]) in (try self.audit.caseRow(id), try self.audit.events(caseID: id)) }
            guard found.0 != nil || !found.1.isEmpty else { throw HTTPError(.notFound, message: "no case \(id)") }
            return Self.json(["case": found.0.map(Self.caseObject) as Any, "events": found.1.map(Self.eventObject)])
        }
        router.get("api/v1/queue") { request, _ in
            try self.authorize(request, .auditor)
            guard let queue = self.queue else { return Self.json(["cluster": false]) }
            let (depth, leases, nodes) = try await self.blocking { (try queue.depth(), try queue.leases(), try queue.nodes()) }
            return Self.json([
                "cluster": true,
                "depth": ["queued": depth.queued, "running": depth.running, "expired": depth.expired, "done": depth.done, "failed": depth.failed],
                "leases": leases.map { ["job": $0.job, "node": $0.node, "attempts": $0.attempts, "seconds_left": $0.secondsLeft] as [String: Any] },
                "nodes": nodes.map { ["name": $0.name, "role": $0.role, "pid": $0.pid, "last_seen": $0.lastSeen, "silent_s": $0.silentSeconds] as [String: Any] },
            ])
        }
        router.get("api/v1/outbox") { request, _ in
            try self.authorize(request, .auditor)
            try Self.onlyParameters(request, ["state", "limit"])
            let q = request.uri.queryParameters
            var state: OutboxItem.State?
            if let s = q.get("state") {
                guard let parsed = OutboxItem.State(rawValue: s.uppercased()) else {
                    throw HTTPError(.badRequest, message: "state: PENDING, SENT, FAILED or CANCELLED")
                }
                state = parsed
            }
            let limit = try Self.integer(q.get("limit"), "limit", 1...500) ?? 100
            guard let outbox = self.outbox else { return Self.json(["items": [Any]()]) }
            let wanted = state
            let items = try await self.blocking { try outbox.items(state: wanted, limit: limit) }
            return Self.json(["items": items.map(Self.outboxObject)])
        }
        router.post("api/v1/outbox/:id/:action") { request, context in
            let account = try self.authorize(request, .operator)
            let item = try await self.outboxAction(context.parameters.get("id"), context.parameters.get("action"), account: account)
            return Self.json(Self.outboxObject(item))
        }
        router.post("api/v1/quarantine/:name/requeue") { request, context in
            let account = try self.authorize(request, .operator)
            let name = context.parameters.get("name") ?? ""
            let files = try await self.requeue(name, account: account)
            return Self.json(["name": name, "files": files])
        }
        router.post("api/v1/verify") { request, _ in
            try self.authorize(request, .auditor)
            let (report, at) = try await self.runVerify()
            var body: [String: Any] = [
                "intact": report.intact, "events": report.events, "cases": report.cases, "sealed_cases": report.sealedCases,
                "signatures_checked": self.publicKey != nil, "checked_at": ISO8601DateFormatter().string(from: at),
                "findings": report.findings.map { f -> [String: Any] in
                    var o: [String: Any] = ["mechanism": f.mechanism.rawValue, "detail": f.detail]
                    if let id = f.eventID { o["event_id"] = id }
                    return o
                },
            ]
            if let first = report.findings.first {
                body["reason"] = first.detail
                if let id = first.eventID { body["event_id"] = id }
            }
            return Self.json(body)
        }
        addPages(to: router)
        return router
    }

    /// Retries or cancels an outbox item for an operator, as an audit event naming the account.
    func outboxAction(_ idText: String?, _ action: String?, account: ConsoleAccount) async throws -> OutboxItem {
        guard let outbox = self.outbox else { throw HTTPError(.notFound, message: "this console has no outbox") }
        guard let id = Int64(idText ?? ""), let action, action == "retry" || action == "cancel" else { throw HTTPError(.notFound) }
        let item: OutboxItem
        do {
            item = try await blocking { () -> OutboxItem in
                let item = try outbox.item(id)
                if action == "retry" { try outbox.retry(id) } else { try outbox.cancel(id) }
                try self.audit.append(caseID: item.caseID, kind: "outbox_\(action)", payload: [
                    "outbox_item": .int(id), "destination": .string(item.destination.name), "account": .string(account.name),
                    "via": .string("console"),
                ])
                return try outbox.item(id)
            }
        } catch let error as OutboxError where error.code == .itemNotFound {
            throw HTTPError(.notFound, message: error.description)
        } catch let error as OutboxError where error.code == .wrongState {
            throw HTTPError(.conflict, message: error.description)
        }
        logger.notice("operator action", metadata: ["account": "\(account.name)", "action": "outbox_\(action)", "item": "\(id)"])
        return item
    }

    /// Puts a quarantined delivery back into the intake for an operator (audited as `quarantine_requeued`).
    func requeue(_ name: String, account: ConsoleAccount) async throws -> Int {
        guard let quarantine else { throw HTTPError(.notFound, message: "this console has no intake (start it with --site)") }
        let files = try await blocking { () -> Int? in
            guard let files = try quarantine.requeue(name) else { return nil }
            try self.audit.append(caseID: name, kind: "quarantine_requeued", payload: [
                "entry": .string(name), "files": .int(Int64(files)), "account": .string(account.name), "via": .string("console"),
            ])
            return files
        }
        guard let files else { throw HTTPError(.notFound, message: "no quarantine entry \(name)") }
        logger.notice("operator action", metadata: ["account": "\(account.name)", "action": "quarantine_requeued", "entry": "\(name)"])
        return files
    }

    /// Verifies the log (chain, case rows, and with a public key every seal), remembered for the dashboard and metrics.
    func runVerify() async throws -> (AuditVerifyReport, Date) {
        let started = Date()
        let key = publicKey
        let report = try await blocking { try self.audit.verify(AuditEvidence(publicKey: key, allowUnsealed: true)) }
        verifyState.record(report, at: started)
        return (report, started)
    }

    /// The case filter of the API, the case list and the export: status, model, series UID, pseudonymous patient ID,
    /// `since`/`until` (a date, or an RFC 3339 time; a date as `until` includes that day), one case by `case_id`.
    /// The returned filter asks for one row beyond `limit`, to tell whether there is a next page.
    static func caseFilter(_ request: Request, defaultLimit: Int, maximum: Int, form: Bool = false) throws -> (AuditLog.Filter, limit: Int, offset: Int) {
        try onlyParameters(request, ["status", "model", "series_uid", "patient_id", "case_id", "since", "until", "limit", "offset"])
        let q = request.uri.queryParameters
        // A form sends its empty fields: on the pages and exports an empty value is no filter; the API refuses it.
        if !form, let empty = ["since", "until", "limit", "offset"].first(where: { q.get($0)?.isEmpty == true }) {
            throw HTTPError(.badRequest, message: "\(empty): empty")
        }
        func text(_ key: String) -> String? { q.get(key).flatMap { $0.isEmpty ? nil : $0 } }
        let limit = try integer(text("limit"), "limit", 1...maximum) ?? defaultLimit
        let offset = try integer(text("offset"), "offset", 0...Int(Int32.max)) ?? 0
        var filter = AuditLog.Filter(status: text("status").map { $0.uppercased() }, model: text("model"), seriesInstanceUID: text("series_uid"),
                                     patientID: text("patient_id"), limit: limit + 1, offset: offset)
        filter.caseID = text("case_id")
        filter.since = try date(text("since"), "since")
        if let until = try date(text("until"), "until") {
            filter.until = isDay(text("until")) ? until.addingTimeInterval(86_400) : until
        }
        return (filter, limit, offset)
    }

    /// Refuses a query parameter the route does not take (400 naming it): a misspelt filter must not quietly
    /// return everything.
    static func onlyParameters(_ request: Request, _ known: Set<String>) throws {
        for (key, _) in request.uri.queryParameters where !known.contains(String(key)) {
            throw HTTPError(.badRequest, message: "unknown parameter \(key) (this address takes: \(known.sorted().joined(separator: ", ")))")
        }
    }

    static func isDay(_ text: String?) -> Bool { text.map { $0.count == 10 && !$0.contains("T") && !$0.contains("t") } ?? false }

    // MARK: Access

    /// The account the request is made for, if its role allows `needed` (operators may do what auditors may).
    @discardableResult
    func authorize(_ request: Request, _ needed: ConsoleRole) throws -> ConsoleAccount {
        let access = configuration.access
        var account: ConsoleAccount?
        if let userHeader = access.trustedUserHeader.flatMap({ HTTPField.Name($0) }), let user = request.headers[userHeader], !user.isEmpty {
            let role = access.trustedRoleHeader.flatMap({ HTTPField.Name($0) }).flatMap { request.headers[$0] }.flatMap { ConsoleRole(rawValue: $0) }
            guard let role else { throw HTTPError(.forbidden, message: "the proxy named no role (operator or auditor)") }
            account = ConsoleAccount(name: user, role: role, passwordHash: "")
        } else if let basic = request.headers.basic {
            account = access.account(name: basic.username, password: basic.password)
        }
        guard let account else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"nnseg console\", charset=\"UTF-8\""], message: "sign in")
        }
        if needed == .operator {
            guard account.role == .operator else { throw HTTPError(.forbidden, message: "\(account.name) is an auditor: operator actions are not allowed") }
            guard !configuration.readOnly else { throw HTTPError(.forbidden, message: "this console is read-only") }
        }
        return account
    }

    // MARK: Helpers

    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Self.work.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// A query integer within `range` (absent: nil); anything else is a 400 naming the parameter.
    static func integer(_ text: String?, _ name: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw HTTPError(.badRequest, message: "\(name): an integer \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    static func date(_ text: String?, _ name: String) throws -> Date? {
        guard let text, !text.isEmpty else { return nil }
        if let d = Page.parseTime(text.uppercased()) { return d }   // RFC 3339 allows a lower-case t and z
        let day = DateFormatter()
        day.locale = Locale(identifier: "en_US_POSIX")
        day.timeZone = TimeZone(identifier: "UTC")
        day.dateFormat = "yyyy-MM-dd"
        if let d = day.date(from: text) { return d }
        throw HTTPError(.badRequest, message: "\(name): a date (YYYY-MM-DD) or ISO 8601 time")
    }

    static func caseObject(_ c: AuditCase) -> [String: Any] {
        ["case_id": c.caseID, "started_at": c.startedAt, "finished_at": c.finishedAt, "status": c.status, "model": c.model,
         "series_uid": c.seriesInstanceUID, "profile": c.profile, "error": c.error as Any]
    }

    static func eventObject(_ e: AuditEvent) -> [String: Any] {
        let payload = (try? JSONSerialization.jsonObject(with: Data(e.payload.utf8), options: [.fragmentsAllowed])) ?? e.payload
        return ["id": e.id ?? 0, "kind": e.kind, "recorded_at": e.recordedAt, "payload": payload, "hash": e.hash]
    }

    static func outboxObject(_ i: OutboxItem) -> [String: Any] {
        ["id": i.id, "case_id": i.caseID, "destination": i.destination.name, "ae_title": i.destination.aeTitle, "state": i.state.rawValue,
         "attempts": i.attempts, "next_attempt_at": ISO8601DateFormatter().string(from: i.nextAttemptAt), "last_error": i.lastError as Any]
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// The last on-demand `audit verify` of this console (for the metrics and the dashboard).
final class VerifyState: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var last: (result: AuditVerifyReport, at: Date)?

    func record(_ result: AuditVerifyReport, at date: Date) {
        lock.lock()
        last = (result, date)
        lock.unlock()
    }

    var snapshot: (result: AuditVerifyReport, at: Date)? {
        lock.lock()
        defer { lock.unlock() }
        return last
    }
}


/// 405 (with `Allow`) for a known path asked with a method it does not serve — the router alone answers 404.
struct MethodNotAllowed: RouterMiddleware {
    typealias Context = BasicRequestContext
    static let routes: [(pattern: [String], methods: [HTTPRequest.Method])] = [
        (["healthz"], [.get]), (["readyz"], [.get]), (["metrics"], [.get]), (["api", "v1", "cases"], [.get]),
        (["api", "v1", "cases", "*"], [.get]), (["api", "v1", "queue"], [.get]), (["api", "v1", "outbox"], [.get]),
        (["api", "v1", "outbox", "*", "*"], [.post]), (["api", "v1", "quarantine", "*", "requeue"], [.post]), (["api", "v1", "verify"], [.post]),
        ([], [.get]), (["cases"], [.get]), (["cases", "*"], [.get]), (["cases", "*", "files", "*"], [.get]), (["verify"], [.get, .post]),
        (["export", "cases.csv"], [.get]), (["export", "cases.json"], [.get]), (["outbox", "*", "*"], [.post]), (["quarantine", "*", "requeue"], [.post]),
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let parts = request.uri.path.split(separator: "/").map(String.init)
        if let route = Self.routes.first(where: { r in r.pattern.count == parts.count && zip(r.pattern, parts).allSatisfy { $0 == "*" || $0 == $1 } }),
           !route.methods.contains(request.method) {
            return Response(status: .methodNotAllowed, headers: [.allow: route.methods.map(\.rawValue).joined(separator: ", ")])
        }
        return try await next(request, context)
    }
}
