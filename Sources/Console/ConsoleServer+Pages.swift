import AuditLog
import Digest
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Outbox

extension ConsoleServer {
    /// The HTML pages (``Page``), the QA sheet and report files of a case, the CSV/JSON export, and the operator
    /// forms (outbox retry/cancel, quarantine requeue: POST, same origin only, then back to the page they came from).
    func addPages(to router: Router<BasicRequestContext>) {
        let operatorActions = !configuration.readOnly
        router.get("/") { request, _ in
            let account = try self.authorize(request, .auditor)
            let d = try await self.blocking { try self.dashboard() }
            return Self.html(Page.dashboard(d, account: account, operatorActions: operatorActions))
        }
        router.get("cases") { request, _ in
            let account = try self.authorize(request, .auditor)
            let q = request.uri.queryParameters
            let (filter, limit, offset) = try Self.caseFilter(request, defaultLimit: 50, maximum: 500, form: true)
            let rows = try await self.blocking { try self.audit.cases(filter) }
            func text(_ key: String) -> String? { q.get(key).flatMap { $0.isEmpty ? nil : $0 } }
            let query = Page.CaseListQuery(status: text("status")?.uppercased(), model: text("model"), seriesUID: text("series_uid"),
                                           patientID: text("patient_id"), since: text("since"), until: text("until"), limit: limit, offset: offset)
            return Self.html(Page.caseList(Array(rows.prefix(limit)), query: query, hasMore: rows.count > limit, account: account))
        }
        router.get("cases/:id") { request, context in
            let account = try self.authorize(request, .auditor)
            let id = context.parameters.get("id") ?? ""
            let page = try await self.blocking { try self.casePage(id) }
            guard let page else { throw HTTPError(.notFound, message: "no case \(id)") }
            return Self.html(Page.casePage(page, account: account, operatorActions: operatorActions))
        }
        router.get("cases/:id/files/:name") { request, context in
            try self.authorize(request, .auditor)
            let id = context.parameters.get("id") ?? "", name = context.parameters.get("name") ?? ""
            let file = try await self.blocking { () -> (Data, String) in
                // Only the QA sheet's pages and the report, only as the log recorded them (the DICOM and NIfTI outputs
                // carry the patient's name and are not served here).
                guard let output = self.outputChecks(try self.audit.events(caseID: id)).first(where: { $0.name == name && ($0.kind == "qa_snapshot" || $0.kind == "report") }) else {
                    throw HTTPError(.notFound, message: "case \(id) has no QA sheet or report named \(name)")
                }
                guard output.state == .matches else {
                    throw HTTPError(.conflict, message: "\(name) of case \(id) is \(output.state.rawValue.lowercased()): it is not the file the audit log recorded")
                }
                return (try Data(contentsOf: URL(fileURLWithPath: output.path)), output.kind == "report" ? "text/html; charset=utf-8" : "image/png")
            }
            var headers = Self.pageHeaders
            headers[.contentType] = file.1
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.0)))
        }
        router.get("verify") { request, _ in
            let account = try self.authorize(request, .auditor)
            return Self.html(Page.verifyPage(self.verifyState.snapshot, checksSignatures: self.publicKey != nil, account: account))
        }
        router.post("verify") { request, _ in
            let account = try self.authorize(request, .auditor)
            _ = try await self.runVerify()
            return Self.html(Page.verifyPage(self.verifyState.snapshot, checksSignatures: self.publicKey != nil, account: account))
        }
        router.get("export/cases.csv") { request, _ in
            try self.authorize(request, .auditor)
            let (filter, limit, _) = try Self.caseFilter(request, defaultLimit: 10_000, maximum: 100_000, form: true)
            let rows = try await self.blocking { try self.audit.cases(filter) }
            return Self.download(Page.csv(Array(rows.prefix(limit))), type: "text/csv; charset=utf-8", name: "nnseg-cases.csv")
        }
        router.get("export/cases.json") { request, _ in
            try self.authorize(request, .auditor)
            let (filter, limit, _) = try Self.caseFilter(request, defaultLimit: 1_000, maximum: 10_000, form: true)
            // Serialised on the database queue (JSON objects are not Sendable).
            let data = try await self.blocking { () -> Data in
                let cases = try self.audit.cases(filter).prefix(limit).map { c -> [String: Any] in
                    var o = Self.caseObject(c)
                    o["events"] = try self.audit.events(caseID: c.caseID).map(Self.eventObject)
                    return o
                }
                return try JSONSerialization.data(withJSONObject: ["cases": cases], options: [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted])
            }
            return Self.download(String(decoding: data, as: UTF8.self), type: "application/json", name: "nnseg-cases.json")
        }
        router.post("outbox/:id/:action") { request, context in
            let account = try self.authorize(request, .operator)
            let back = try await Self.returnPath(request)
            _ = try await self.outboxAction(context.parameters.get("id"), context.parameters.get("action"), account: account)
            return Response(status: .seeOther, headers: [.location: back])
        }
        router.post("quarantine/:name/requeue") { request, context in
            let account = try self.authorize(request, .operator)
            let back = try await Self.returnPath(request)
            _ = try await self.requeue(context.parameters.get("name") ?? "", account: account)
            return Response(status: .seeOther, headers: [.location: back])
        }
    }

    // MARK: Data for the pages

    func dashboard() throws -> Page.Dashboard {
        let now = Date()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let midnight = calendar.startOfDay(for: now)
        var todayFilter = AuditLog.Filter(limit: 1001)
        todayFilter.since = midnight
        let today = try audit.cases(todayFilter)
        var failedFilter = AuditLog.Filter(status: "FAILED", limit: 2000)
        failedFilter.since = now.addingTimeInterval(-7 * 86_400)
        let failed = try audit.cases(failedFilter)
        var codes: [String: Int] = [:]
        for c in failed { codes[Page.reasonCode(c.error) ?? "(no code)", default: 0] += 1 }
        let open = try outbox.map { o in try o.items(state: .failed, limit: 20) + o.items(state: .pending, limit: 20) } ?? []
        return Page.Dashboard(today: Array(today.prefix(1000)), todayTruncated: today.count > 1000, failures: Array(failed.prefix(10)),
                              failureCodes: codes.map { ($0.key, $0.value) }.sorted { ($0.count, $1.code) > ($1.count, $0.code) },
                              totals: try audit.caseCounts(), queue: try queue.map { (try $0.depth(), try $0.leases()) },
                              outboxDepth: try outbox?.depth(), outboxOpen: open, quarantine: try quarantine?.entries(),
                              lastVerify: verifyState.snapshot)
    }

    /// The case's recorded outputs (its `output` events), each hashed again on disk.
    func outputChecks(_ events: [AuditEvent]) -> [Page.OutputCheck] {
        events.filter { $0.kind == "output" }.map { e in
            let o = Page.payload(e)
            let path = o["path"]?.string ?? "", recorded = o["sha256"]?.string ?? ""
            let url = URL(fileURLWithPath: path)
            let state: Page.OutputCheck.State
            if !FileManager.default.fileExists(atPath: path) {
                state = .missing
            } else {
                state = (try? SHA256.hash(contentsOf: url).hex) == recorded ? .matches : .changed
            }
            return Page.OutputCheck(kind: o["kind"]?.string ?? "", name: url.lastPathComponent, path: path, recordedSHA256: recorded, state: state, detail: o)
        }
    }

    func casePage(_ caseID: String) throws -> Page.CasePage? {
        let row = try audit.caseRow(caseID)
        let events = try audit.events(caseID: caseID)
        guard row != nil || !events.isEmpty else { return nil }
        let outputs = outputChecks(events)
        var signature = Page.SignatureState()
        if let receipt = try audit.receipt(caseID: caseID) {
            signature.receipt = receipt
            if let key = publicKey {
                signature.keyID = key.id
                signature.signatureValid = receipt.keyID == key.id && key.isValid(signature: receipt.signature, for: receipt.message)
            }
            if let folder = outputs.first.map({ URL(fileURLWithPath: $0.path).deletingLastPathComponent() }),
               let text = try? String(contentsOf: folder.appendingPathComponent("receipt.json"), encoding: .utf8) {
                signature.receiptFileMatches = AuditReceipt(json: text.trimmingCharacters(in: .whitespacesAndNewlines)) == receipt
            }
        }
        return Page.CasePage(caseID: caseID, row: row, events: events, outputs: outputs, signature: signature,
                             outboxItems: try outbox?.items(caseID: caseID) ?? [])
    }

    // MARK: Responses

    /// No script runs on a console page; images only from the console itself (or inline, as report.html has them).
    static let pageHeaders: HTTPFields = [
        .contentSecurityPolicy: "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        .xContentTypeOptions: "nosniff", .cacheControl: "no-store", HTTPField.Name("Referrer-Policy")!: "no-referrer",
    ]

    static func html(_ text: String) -> Response {
        var headers = pageHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func download(_ text: String, type: String, name: String) -> Response {
        var headers = pageHeaders
        headers[.contentType] = type
        headers[.contentDisposition] = "attachment; filename=\"\(name)\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Where a form sends the browser back to: its `return` field if it is a path on this console, else the dashboard.
    static func returnPath(_ request: Request) async throws -> String {
        let body = String(buffer: try await request.body.collect(upTo: 16_384))
        // Parsed by hand: whatever the body holds (bad percent escapes included) gives a value or nothing, never a trap.
        let value = body.split(separator: "&").lazy.compactMap { pair -> String? in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == "return" else { return nil }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }.first ?? "/"
        return value.hasPrefix("/") && !value.hasPrefix("//") && !value.contains("\\") ? value : "/"
    }
}

/// Refuses a state-changing request another site's page makes a browser send with the console's credentials
/// (cross-site request forgery): a POST whose `Origin` is not this console, or that the browser marks cross-site.
struct SameOriginPosts: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .post {
            if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site != "same-origin", site != "none" {
                throw HTTPError(.forbidden, message: "cross-site request refused")
            }
            if let origin = request.headers[.origin] {
                let host = request.head.authority ?? ""
                guard let url = URL(string: origin), let originHost = url.host else { throw HTTPError(.forbidden, message: "cross-site request refused") }
                let originAuthority = url.port.map { "\(originHost):\($0)" } ?? originHost
                guard originAuthority.lowercased() == host.lowercased() else { throw HTTPError(.forbidden, message: "cross-site request refused") }
            }
        }
        return try await next(request, context)
    }
}
