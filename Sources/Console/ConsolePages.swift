import AuditLog
import Foundation
import JSON
import JobQueue
import Outbox

/// The console's pages (#20): server-rendered HTML, no script, no build step — small, readable and printable
/// (`@media print` drops navigation and forms). Every value from the database is escaped; patient data appears
/// only as the pseudonym the audit log stores.
enum Page {
    // MARK: Frame

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A query string from parameters (empty values left out), percent-encoded.
    static func query(_ parameters: [(String, String?)]) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+?#")
        let parts = parameters.compactMap { key, value -> String? in
            guard let value, !value.isEmpty else { return nil }
            return "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    static let style = """
    body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#fff}
    header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#17324d;color:#fff}
    header a{color:#fff;text-decoration:none;margin-right:1em}header a:hover{text-decoration:underline}
    header .who{margin-left:auto;opacity:.8}
    main{padding:1em 1.2em;max-width:1200px}
    h1{font-size:1.4em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #d0d7de}
    table{border-collapse:collapse;margin:.3em 0 1em}th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
    th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
    code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;word-break:break-all}
    .badge{display:inline-block;padding:0 .5em;border-radius:.7em;font-size:.85em;font-weight:600;background:#e6e9ed}
    .ok{background:#d8f3dc;color:#14532d}.bad{background:#fde2e1;color:#7f1d1d}.warn{background:#fff3c4;color:#713f12}
    .tiles{display:flex;flex-wrap:wrap;gap:.8em}.tile{border:1px solid #d0d7de;border-radius:.4em;padding:.5em .9em;min-width:8em}
    .tile b{display:block;font-size:1.6em}
    form.inline{display:inline}form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;margin-bottom:.8em}
    form.filters label{display:flex;flex-direction:column;font-size:.85em}
    img.qa{max-width:100%;border:1px solid #d0d7de}
    .bar{display:inline-block;height:.8em;background:#4a7fb0}
    footer{padding:1em 1.2em;color:#57606a;font-size:.85em}
    @media print{header nav,form,.noprint{display:none}body{font-size:11px}main{max-width:none}}
    """

    /// A whole page: title, navigation, the signed-in account, the body.
    static func frame(title: String, account: ConsoleAccount, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
        <title>\(escape(title)) · nnseg console</title><style>\(style)</style></head>
        <body><header><strong>nnseg</strong><nav><a href="/">Dashboard</a><a href="/cases">Cases</a><a href="/verify">Audit verify</a></nav>
        <span class="who">\(escape(account.name)) · \(account.role.rawValue)</span></header>
        <main>
        <h1>\(escape(title))</h1>
        \(body)
        </main><footer>Rendered \(escape(timestamp(Date()))) · all times UTC · patients appear only as the audit log's pseudonyms</footer></body></html>
        """
    }

    static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    /// "2026-12-03T23:16:43.848Z" → "2026-12-03 23:16:43".
    static func shortTime(_ stored: String) -> String {
        guard stored.count >= 19 else { return stored }
        return String(stored.prefix(19)).replacingOccurrences(of: "T", with: " ")
    }

    static func parseTime(_ stored: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: stored) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: stored)
    }

    static func duration(_ c: AuditCase) -> String {
        guard let a = parseTime(c.startedAt), let b = parseTime(c.finishedAt) else { return "" }
        return seconds(b.timeIntervalSince(a))
    }

    static func seconds(_ s: Double) -> String { s < 10 ? String(format: "%.2f s", s) : s < 600 ? String(format: "%.1f s", s) : String(format: "%.0f min", s / 60) }

    static func badge(_ status: String) -> String {
        let kind: String
        switch status {
        case "SUCCEEDED", "SENT", "EMPTY_RESULT", "INTACT", "VALID", "MATCHES", "PASSED": kind = "ok"
        case "FAILED", "QUARANTINED", "CANCELLED", "BROKEN", "INVALID", "CHANGED", "MISSING", "DIFFERS": kind = "bad"
        case "PENDING", "HELD", "RUNNING": kind = "warn"
        default: kind = ""
        }
        return "<span class=\"badge \(kind)\">\(escape(status))</span>"
    }

    /// The stable code an error starts with (`SERIES_NOT_FOUND: …` → `SERIES_NOT_FOUND`), if it has one.
    static func reasonCode(_ error: String?) -> String? {
        guard let error, let colon = error.firstIndex(of: ":") else { return nil }
        let code = error[..<colon]
        guard code.count >= 3, code.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }), code.first?.isLetter == true else { return nil }
        return String(code)
    }

    /// One path segment, percent-encoded (a case ID or quarantine entry inside a URL path).
    static func segment(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? text }

    static func caseLink(_ id: String) -> String {
        "<a class=\"mono\" href=\"/cases/\(escape(segment(id)))\">\(escape(id))</a>"
    }

    static func caseTable(_ rows: [AuditCase]) -> String {
        guard !rows.isEmpty else { return "<p>No cases.</p>" }
        var html = "<table><tr><th>Case</th><th>Status</th><th>Started</th><th>Duration</th><th>Model</th><th>Profile</th><th>Reason</th></tr>"
        for c in rows {
            html += "<tr><td>\(caseLink(c.caseID))</td><td>\(badge(c.status))</td><td>\(escape(shortTime(c.startedAt)))</td><td class=\"num\">\(duration(c))</td>"
            html += "<td>\(escape(c.model))</td><td>\(escape(c.profile))</td><td>\(c.error.map { "<code>\(escape(reasonCode($0) ?? String($0.prefix(80))))</code>" } ?? "")</td></tr>"
        }
        return html + "</table>"
    }

    // MARK: Dashboard

    struct Dashboard {
        var today: [AuditCase]
        var todayTruncated: Bool
        var failures: [AuditCase]
        var failureCodes: [(code: String, count: Int)]
        var totals: [String: Int]
        var queue: (depth: JobQueue.Depth, leases: [(job: String, node: String, attempts: Int, secondsLeft: Double)])?
        var outboxDepth: [OutboxItem.State: Int]?
        var outboxOpen: [OutboxItem]
        var quarantine: [QuarantineEntry]?
        var lastVerify: (result: AuditVerifyReport, at: Date)?
    }

    static func dashboard(_ d: Dashboard, account: ConsoleAccount, operatorActions: Bool) -> String {
        var html = "<h2>Today (since 00:00 UTC)</h2><div class=\"tiles\">"
        var byStatus: [String: Int] = [:]
        for c in d.today { byStatus[c.status, default: 0] += 1 }
        html += "<div class=\"tile\"><b>\(d.today.count)\(d.todayTruncated ? "+" : "")</b>cases</div>"
        for (status, n) in byStatus.sorted(by: { $0.key < $1.key }) { html += "<div class=\"tile\"><b>\(n)</b>\(badge(status))</div>" }
        html += "</div>"
        html += caseTable(Array(d.today.prefix(50)))
        if d.today.count > 50 { html += "<p><a href=\"/cases\(query([("since", dayString(Date()))]))\">All of today's cases</a></p>" }

        html += "<h2>Failures (last 7 days)</h2>"
        if d.failureCodes.isEmpty {
            html += "<p>None.</p>"
        } else {
            html += "<table><tr><th>Reason code</th><th>Cases</th></tr>"
            for f in d.failureCodes { html += "<tr><td><code>\(escape(f.code))</code></td><td class=\"num\">\(f.count)</td></tr>" }
            html += "</table><p>Most recent:</p>" + caseTable(d.failures)
        }

        html += "<h2>Queue</h2>"
        if let q = d.queue {
            html += "<p>queued \(q.depth.queued) · running \(q.depth.running) · lease expired \(q.depth.expired) · done \(q.depth.done) · failed \(q.depth.failed)</p>"
            if !q.leases.isEmpty {
                html += "<table><tr><th>Job</th><th>Node</th><th>Attempts</th><th>Lease left</th></tr>"
                for l in q.leases {
                    html += "<tr><td>\(caseLink(l.job))</td><td>\(escape(l.node))</td><td class=\"num\">\(l.attempts)</td><td class=\"num\">\(seconds(l.secondsLeft))</td></tr>"
                }
                html += "</table>"
            }
        } else {
            html += "<p>One node: cases run as they arrive (no shared queue).</p>"
        }
        if let entries = d.quarantine {
            html += "<h2>Quarantine</h2>" + quarantineTable(entries, operatorActions: operatorActions && account.role == .operator)
        }

        html += "<h2>Outbox</h2>"
        if let depth = d.outboxDepth {
            html += "<p>" + OutboxItem.State.allCases.map { "\($0.rawValue.lowercased()) \(depth[$0] ?? 0)" }.joined(separator: " · ") + "</p>"
            html += outboxTable(d.outboxOpen, operatorActions: operatorActions && account.role == .operator, returnTo: "/")
        } else {
            html += "<p>This console has no outbox (started on an audit database alone).</p>"
        }

        html += "<h2>Audit log</h2>" + verifySummary(d.lastVerify, totals: d.totals)
        return frame(title: "Dashboard", account: account, body: html)
    }

    static func dayString(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f.string(from: date)
    }

    static func outboxTable(_ items: [OutboxItem], operatorActions: Bool, returnTo: String) -> String {
        guard !items.isEmpty else { return "<p>Nothing waiting or failed.</p>" }
        var html = "<table><tr><th>Item</th><th>Case</th><th>Destination</th><th>State</th><th>Attempts</th><th>Next attempt</th><th>Last error</th>\(operatorActions ? "<th class=\"noprint\">Action</th>" : "")</tr>"
        for i in items {
            html += "<tr><td class=\"num\">\(i.id)</td><td>\(caseLink(i.caseID))</td><td>\(escape(i.destination.name)) <span class=\"mono\">(\(escape(i.destination.aeTitle)))</span></td>"
            html += "<td>\(badge(i.state.rawValue))</td><td class=\"num\">\(i.attempts)</td><td>\(i.state == .pending ? escape(shortTime(timestamp(i.nextAttemptAt))) : "")</td>"
            html += "<td>\(escape(i.lastError ?? ""))</td>"
            if operatorActions {
                html += "<td class=\"noprint\">"
                if i.state == .failed || i.state == .cancelled || i.state == .pending {
                    html += actionButton("/outbox/\(i.id)/retry", "Retry now", returnTo: returnTo)
                }
                if i.state == .pending || i.state == .failed { html += actionButton("/outbox/\(i.id)/cancel", "Cancel", returnTo: returnTo) }
                html += "</td>"
            }
            html += "</tr>"
        }
        return html + "</table>"
    }

    static func actionButton(_ action: String, _ label: String, returnTo: String) -> String {
        "<form class=\"inline\" method=\"post\" action=\"\(escape(action))\"><input type=\"hidden\" name=\"return\" value=\"\(escape(returnTo))\"><button>\(escape(label))</button></form> "
    }

    static func quarantineTable(_ entries: [QuarantineEntry], operatorActions: Bool) -> String {
        guard !entries.isEmpty else { return "<p>Empty.</p>" }
        var html = "<table><tr><th>Entry</th><th>Reason</th>\(operatorActions ? "<th class=\"noprint\">Action</th>" : "")</tr>"
        for e in entries {
            html += "<tr><td class=\"mono\">\(escape(e.name))</td><td>\(escape(e.reason))</td>"
            if operatorActions {
                let path = "/quarantine/\(segment(e.name))/requeue"
                html += "<td class=\"noprint\">\(actionButton(path, "Requeue", returnTo: "/"))</td>"
            }
            html += "</tr>"
        }
        return html + "</table>"
    }

    static func verifySummary(_ last: (result: AuditVerifyReport, at: Date)?, totals: [String: Int]) -> String {
        var html = "<p>\(totals.values.reduce(0, +)) cases recorded: " + totals.sorted { $0.key < $1.key }.map { "\(escape($0.key.lowercased())) \($0.value)" }.joined(separator: " · ") + "</p>"
        if let last {
            html += "<p>Last verified \(escape(shortTime(timestamp(last.at)))): " + badge(last.result.intact ? "INTACT" : "BROKEN")
            html += " — \(last.result.events) events, \(last.result.cases) cases, \(last.result.sealedCases) signed case seals, \(last.result.findings.count) findings.</p>"
        } else {
            html += "<p>Not verified since this console started.</p>"
        }
        return html + "<p class=\"noprint\"><a href=\"/verify\">Verify now</a></p>"
    }

    // MARK: Case list

    struct CaseListQuery {
        var status: String?, model: String?, seriesUID: String?, patientID: String?, since: String?, until: String?
        var limit: Int, offset: Int
        var parameters: [(String, String?)] {
            [("status", status), ("model", model), ("series_uid", seriesUID), ("patient_id", patientID), ("since", since), ("until", until)]
        }
    }

    static func caseList(_ rows: [AuditCase], query q: CaseListQuery, hasMore: Bool, account: ConsoleAccount) -> String {
        func field(_ name: String, _ label: String, _ value: String?, type: String = "text", size: Int = 14) -> String {
            "<label>\(label)<input type=\"\(type)\" name=\"\(name)\" size=\"\(size)\" value=\"\(escape(value ?? ""))\"></label>"
        }
        var html = "<form class=\"filters\" method=\"get\" action=\"/cases\"><label>Status<select name=\"status\"><option value=\"\">any</option>"
        for s in ["SUCCEEDED", "EMPTY_RESULT", "FAILED", "QUARANTINED", "DUPLICATE", "HELD"] {
            html += "<option\(q.status == s ? " selected" : "")>\(s)</option>"
        }
        html += "</select></label>" + field("model", "Model", q.model) + field("series_uid", "Series UID", q.seriesUID, size: 30)
        html += field("patient_id", "Patient (pseudonym)", q.patientID, size: 20) + field("since", "From", q.since, type: "date", size: 10)
        html += field("until", "Until", q.until, type: "date", size: 10)
        html += "<label>Per page<input type=\"number\" name=\"limit\" min=\"1\" max=\"500\" value=\"\(q.limit)\" size=\"4\"></label><button>Filter</button></form>"
        let filters = query(q.parameters)
        let separator = filters.isEmpty ? "?" : "&"
        html += "<p class=\"noprint\">Export these cases: <a href=\"/export/cases.csv\(filters)\">CSV</a> · <a href=\"/export/cases.json\(filters)\">JSON (with events)</a></p>"
        html += "<p>Cases \(rows.isEmpty ? 0 : q.offset + 1)–\(q.offset + rows.count)</p>" + caseTable(rows)
        var paging: [String] = []
        if q.offset > 0 { paging.append("<a href=\"/cases\(filters)\(separator)limit=\(q.limit)&offset=\(max(0, q.offset - q.limit))\">← newer</a>") }
        if hasMore { paging.append("<a href=\"/cases\(filters)\(separator)limit=\(q.limit)&offset=\(q.offset + q.limit)\">older →</a>") }
        if !paging.isEmpty { html += "<p class=\"noprint\">" + paging.joined(separator: " · ") + "</p>" }
        return frame(title: "Cases", account: account, body: html)
    }

    // MARK: Case page

    /// An output file as recorded, and what is on disk now.
    struct OutputCheck {
        enum State: String { case matches = "MATCHES", changed = "CHANGED", missing = "MISSING" }
        var kind: String
        var name: String
        var path: String
        var recordedSHA256: String
        var state: State
        var detail: [String: JSONValue]
    }

    /// The case's seal and receipt: what the audit log signed, checked with the public key when the console has one.
    struct SignatureState {
        var receipt: AuditReceipt?
        /// nil: no public key to check with.
        var signatureValid: Bool?
        var keyID: String?
        /// `receipt.json` beside the outputs equals the log's receipt (nil: no receipt file found).
        var receiptFileMatches: Bool?
    }

    struct CasePage {
        var caseID: String
        var row: AuditCase?
        var events: [AuditEvent]
        var outputs: [OutputCheck]
        var signature: SignatureState
        var outboxItems: [OutboxItem]
    }

    static func payload(_ e: AuditEvent) -> [String: JSONValue] { JSONValue.parse(e.payload)?.object ?? [:] }

    static func value(_ v: JSONValue?) -> String {
        guard let v else { return "" }
        switch v {
        case .string(let s): return s
        default: return v.canonicalJSON
        }
    }

    static func casePage(_ p: CasePage, account: ConsoleAccount, operatorActions: Bool) -> String {
        var html = ""
        let casePath = "/cases/\(segment(p.caseID))"
        // Summary
        html += "<table>"
        if let c = p.row {
            html += "<tr><th>Status</th><td>\(badge(c.status))\(c.error.map { " <code>\(escape($0))</code>" } ?? "")</td></tr>"
            html += "<tr><th>Started</th><td>\(escape(shortTime(c.startedAt)))</td></tr><tr><th>Finished</th><td>\(escape(shortTime(c.finishedAt))) (\(duration(c)))</td></tr>"
            html += "<tr><th>Model</th><td>\(escape(c.model))</td></tr><tr><th>Profile</th><td>\(escape(c.profile))</td></tr>"
            html += "<tr><th>Series</th><td class=\"mono\">\(escape(c.seriesInstanceUID))</td></tr>"
        } else {
            html += "<tr><th>Status</th><td>\(badge("RUNNING")) no summary yet</td></tr>"
        }
        if let input = p.events.first(where: { $0.kind == "input_series" }).map(payload) {
            if let patient = input["patient_id"]?.string {
                html += "<tr><th>Patient</th><td class=\"mono\">\(escape(patient)) <small>(\(escape(input["patient_id_form"]?.string ?? "as stored")))</small></td></tr>"
            }
            html += "<tr><th>Input</th><td>\(escape(value(input["modality"]))) · \(escape(value(input["files"]))) files · pixel data SHA-256 <code>\(escape(value(input["pixel_sha256"])))</code></td></tr>"
        }
        html += "</table>"

        // QA sheet and report
        let qa = p.outputs.filter { $0.kind == "qa_snapshot" }
        if !qa.isEmpty || p.outputs.contains(where: { $0.kind == "report" }) {
            html += "<h2>QA sheet</h2>"
            if p.outputs.contains(where: { $0.kind == "report" && $0.state == .matches }) {
                html += "<p class=\"noprint\"><a href=\"\(casePath)/files/report.html\">Open the case report (report.html)</a></p>"
            }
            for (n, page) in qa.enumerated() {
                if page.state == .matches {
                    html += "<figure><img class=\"qa\" alt=\"QA sheet page \(n + 1) of case \(escape(p.caseID))\" src=\"\(casePath)/files/\(escape(page.name))\"><figcaption>QA sheet, page \(n + 1) of \(qa.count)</figcaption></figure>"
                } else {
                    html += "<p>\(badge(page.state.rawValue)) \(escape(page.name)) is not shown: it is not the file the log recorded.</p>"
                }
            }
        }

        // Model and inputs
        if let model = p.events.first(where: { $0.kind == "model" }).map(payload) {
            html += "<h2>Model</h2><table><tr><th>Configuration</th><td>\(escape(value(model["configuration"]))) · folds \(escape(value(model["folds"])))</td></tr>"
            html += "<tr><th>Trainer</th><td>\(escape(value(model["trainer"])))</td></tr>"
            for (file, hash) in (model["files"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) {
                html += "<tr><th class=\"mono\">\(escape(file))</th><td><code>\(escape(value(hash)))</code></td></tr>"
            }
            html += "</table>"
        }

        // Outputs
        html += "<h2>Outputs</h2>"
        if p.outputs.isEmpty {
            html += "<p>None recorded.</p>"
        } else {
            html += "<table><tr><th>Output</th><th>File</th><th>SHA-256 (recorded)</th><th>On disk</th><th>Details</th></tr>"
            for o in p.outputs {
                let details = o.detail.filter { !["kind", "path", "sha256"].contains($0.key) }.sorted { $0.key < $1.key }
                    .map { "\(escape($0.key)) \(escape(value($0.value)))" }.joined(separator: " · ")
                html += "<tr><td>\(escape(o.kind))</td><td class=\"mono\">\(escape(o.path))</td><td><code>\(escape(String(o.recordedSHA256.prefix(16))))…</code></td>"
                html += "<td>\(badge(o.state.rawValue))</td><td>\(details)</td></tr>"
            }
            html += "</table>"
        }

        // Where it was sent
        let sendEvents = p.events.filter { ["outbox_queued", "send_attempt", "sent", "send_failed", "outbox_retry", "outbox_cancel"].contains($0.kind) }
        if !sendEvents.isEmpty || !p.outboxItems.isEmpty {
            html += "<h2>Sent</h2>"
            if !p.outboxItems.isEmpty { html += outboxTable(p.outboxItems, operatorActions: operatorActions && account.role == .operator, returnTo: casePath) }
            if !sendEvents.isEmpty {
                html += "<table><tr><th>When</th><th>Event</th><th>Destination</th><th>Attempt</th><th>Detail</th></tr>"
                for e in sendEvents {
                    let o = payload(e)
                    html += "<tr><td>\(escape(shortTime(e.recordedAt)))</td><td>\(escape(e.kind))</td><td>\(escape(value(o["destination"])))</td>"
                    html += "<td class=\"num\">\(escape(value(o["attempt"] ?? o["attempts"])))</td><td>\(escape(value(o["error"] ?? o["account"])))</td></tr>"
                }
                html += "</table>"
            }
        }

        // Verification verdicts
        if let verification = p.events.last(where: { $0.kind == "verification" }).map(payload) {
            let passed = verification["passed"]?.bool == true
            html += "<h2>Output verification</h2><p>\(badge(passed ? "PASSED" : "FAILED")) — the written SEG and RTSTRUCT read back and compared with the label map.</p>"
            if let rois = verification["rois"]?.array, !rois.isEmpty {
                html += "<table><tr><th>Label</th><th>Structure</th><th>cm³</th><th>SEG mismatched voxels</th><th>RTSTRUCT Dice</th><th>Centroid shift (mm)</th><th>Verdict</th></tr>"
                for roi in rois {
                    let r = roi.object ?? [:]
                    html += "<tr><td class=\"num\">\(escape(value(r["label"])))</td><td>\(escape(value(r["name"])))</td><td class=\"num\">\(escape(value(r["cm3"])))</td>"
                    html += "<td class=\"num\">\(escape(value(r["seg_mismatched_voxels"])))</td><td class=\"num\">\(escape(value(r["rtstruct_dice"])))</td>"
                    html += "<td class=\"num\">\(escape(value(r["centroid_shift_mm"])))</td><td>\(r["passed"]?.bool == true ? badge("PASSED") : "<span class=\"badge bad\">FAILED</span> \(escape(value(r["problems"])))")</td></tr>"
                }
                html += "</table>"
            }
        }

        // Signature
        html += "<h2>Signature</h2>"
        if let receipt = p.signature.receipt {
            let verdict: String
            switch p.signature.signatureValid {
            case true?: verdict = badge("VALID") + " checked with key \(escape(p.signature.keyID ?? ""))"
            case false?: verdict = badge("INVALID") + " the seal does not verify with key \(escape(p.signature.keyID ?? ""))"
            case nil: verdict = "<span class=\"badge\">NOT CHECKED</span> (this console has no public key)"
            }
            html += "<table><tr><th>Seal</th><td>events \(receipt.firstEventID)–\(receipt.eventID), key <code>\(escape(receipt.keyID))</code>, chain head <code>\(escape(String(receipt.chainHead.prefix(16))))…</code></td></tr>"
            html += "<tr><th>Signature</th><td>\(verdict)</td></tr>"
            let file: String
            switch p.signature.receiptFileMatches {
            case true?: file = badge("MATCHES") + " receipt.json beside the outputs is the log's receipt"
            case false?: file = badge("DIFFERS") + " receipt.json beside the outputs is not the log's receipt"
            case nil: file = "no receipt.json found beside the outputs"
            }
            html += "<tr><th>Receipt file</th><td>\(file)</td></tr></table>"
        } else {
            html += "<p>Not sealed\(p.row == nil ? " (the case has not finished)" : " (no signing key was configured when it finished)").</p>"
        }

        // Timeline
        html += "<h2>Timeline</h2>"
        if let timings = p.events.last(where: { $0.kind == "stage_timings" }).map(payload), !timings.isEmpty {
            let stages = timings.compactMap { k, v in v.double.map { (k, $0) } }.sorted { $0.1 > $1.1 }
            let longest = max(stages.first?.1 ?? 1, 1e-6)
            html += "<table><tr><th>Stage</th><th>Seconds</th><th class=\"noprint\"></th></tr>"
            for (stage, s) in stages {
                html += "<tr><td>\(escape(stage))</td><td class=\"num\">\(String(format: "%.3f", s))</td><td class=\"noprint\"><span class=\"bar\" style=\"width:\(Int((s / longest * 240).rounded()))px\"></span></td></tr>"
            }
            html += "</table>"
        }
        let first = p.events.first.flatMap { parseTime($0.recordedAt) }
        html += "<table><tr><th>#</th><th>Recorded</th><th>+s</th><th>Event</th><th>Detail</th></tr>"
        for e in p.events {
            let offset = parseTime(e.recordedAt).flatMap { t in first.map { String(format: "%.3f", t.timeIntervalSince($0)) } } ?? ""
            html += "<tr><td class=\"num\">\(e.id ?? 0)</td><td>\(escape(shortTime(e.recordedAt)))</td><td class=\"num\">\(offset)</td><td>\(escape(e.kind))</td>"
            html += "<td><code>\(escape(summary(e)))</code></td></tr>"
        }
        html += "</table>"
        html += "<p class=\"noprint\"><a href=\"/export/cases.json\(query([("case_id", p.caseID)]))\">This case as JSON</a></p>"
        return frame(title: "Case \(p.caseID)", account: account, body: html)
    }

    /// One line per event: its payload without the bulky parts (the profile's text, instance UID lists).
    static func summary(_ e: AuditEvent) -> String {
        var o = payload(e)
        for key in ["profile_content", "sop_instance_uids", "rois", "files"] where o[key] != nil {
            if let a = o[key]?.array { o[key] = .string("[\(a.count)]") } else if o[key]?.object != nil { o[key] = .string("{…}") } else if key == "profile_content" { o[key] = .string("…") }
        }
        let text = JSONValue.object(JSONObject(sortedFrom: o)).canonicalJSON
        return text.count > 400 ? String(text.prefix(400)) + "…" : text
    }

    // MARK: Verify

    static func verifyPage(_ last: (result: AuditVerifyReport, at: Date)?, checksSignatures: Bool, account: ConsoleAccount) -> String {
        var html = "<p>Checks the hash chain of every event and every case row against its summary\(checksSignatures ? ", and every seal's Ed25519 signature with the site's public key" : " (no public key: signatures are not checked)").</p>"
        html += "<form method=\"post\" action=\"/verify\"><button>Verify the audit log now</button></form>"
        if let last {
            let r = last.result
            html += "<h2>Result of \(escape(shortTime(timestamp(last.at))))</h2><p>" + badge(r.intact ? "INTACT" : "BROKEN") + "</p>"
            html += "<table><tr><th>Events</th><td class=\"num\">\(r.events)</td></tr><tr><th>Cases</th><td class=\"num\">\(r.cases)</td></tr>"
            html += "<tr><th>Signed case seals</th><td class=\"num\">\(r.sealedCases)</td></tr><tr><th>Checkpoints</th><td class=\"num\">\(r.checkpoints)</td></tr>"
            html += "<tr><th>Cases without a seal</th><td class=\"num\">\(r.unsealedCases)</td></tr></table>"
            if !r.findings.isEmpty {
                html += "<h2>Findings</h2><table><tr><th>Mechanism</th><th>Event</th><th>Detail</th></tr>"
                for f in r.findings { html += "<tr><td>\(escape(f.mechanism.rawValue))</td><td class=\"num\">\(f.eventID.map(String.init) ?? "")</td><td>\(escape(f.detail))</td></tr>" }
                html += "</table>"
            }
        } else {
            html += "<p>Not verified since this console started.</p>"
        }
        return frame(title: "Audit verify", account: account, body: html)
    }

    // MARK: Export

    static func csvField(_ s: String) -> String {
        // Quoted when needed; a leading =, +, - or @ is prefixed so a spreadsheet does not run it as a formula.
        var text = s
        if let f = text.first, "=+-@".contains(f) { text = "'" + text }
        if text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return text
    }

    static func csv(_ rows: [AuditCase]) -> String {
        var out = "case_id,status,started_at,finished_at,model,profile,series_uid,reason_code,error\r\n"
        for c in rows {
            out += [c.caseID, c.status, c.startedAt, c.finishedAt, c.model, c.profile, c.seriesInstanceUID, reasonCode(c.error) ?? "", c.error ?? ""]
                .map(csvField).joined(separator: ",") + "\r\n"
        }
        return out
    }
}

/// One entry of the intake's quarantine folder, with the first line of its REASON.txt.
public struct QuarantineEntry: Sendable, Equatable {
    public var name: String
    public var reason: String
    public init(name: String, reason: String) {
        self.name = name
        self.reason = reason
    }
}

/// The intake's quarantine as the console sees it (the node's watch configuration, provided by the CLI).
public protocol ConsoleQuarantine: Sendable {
    /// The newest entries.
    func entries() throws -> [QuarantineEntry]
    /// Moves an entry's inputs back into the intake, to be processed again; returns how many files moved, nil if
    /// there is no such entry.
    func requeue(_ name: String) throws -> Int?
}
