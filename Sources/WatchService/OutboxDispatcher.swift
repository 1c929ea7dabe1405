import AuditLog
import CaseIdentity
import DICOMNetwork
import Foundation
import Logging
import Outbox

/// Sends one batch of files to a destination (in a child process: nothing a peer answers can take the
/// supervisor down).
public protocol InstanceSender: Sendable {
    /// The instances' outcomes, or the failure that stopped the association (with what was sent before it).
    func send(_ files: [String], to destination: StoreDestination, callingAETitle: String) -> (instances: [SentInstance], error: String?)
}

/// Runs `nnseg outbox-send` for each batch: arguments name the destination and files; one JSON line back.
public struct WorkerSender: InstanceSender {
    public let executable: URL
    public let arguments: [String]
    /// Added for destinations that use TLS (the node's certificate, key and trusted CAs).
    public let tlsArguments: [String]

    public init(executable: URL, arguments: [String], tlsArguments: [String] = []) {
        self.executable = executable
        self.arguments = arguments
        self.tlsArguments = tlsArguments
    }

    public func send(_ files: [String], to destination: StoreDestination, callingAETitle: String) -> (instances: [SentInstance], error: String?) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + ["--calling-ae", callingAETitle, "--called-ae", destination.aeTitle, "--host", destination.host,
                                         "--port", "\(destination.port)"] + (destination.tls ? ["--secure"] + tlsArguments : []) + ["--"] + files
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let stdout = PipeCollector(output), stderr = PipeCollector(errors)
        do { try process.run() } catch { return ([], "cannot start the sender: \(error)") }
        process.waitForExit()
        let text = stdout.text()
        _ = stderr.text()
        guard process.terminationReason == .exit,
              let line = text.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return ([], "the sender ended without a result (status \(process.terminationStatus))")
        }
        let instances = (object["instances"] as? [[String: Any]] ?? []).map {
            SentInstance(path: $0["path"] as? String ?? "", status: $0["status"] as? Int, sopInstanceUID: $0["sop_uid"] as? String ?? "")
        }
        return (instances, object["error"] as? String)
    }
}

/// Routes finished cases' outputs to their destinations through the persistent outbox (issue #15):
/// queues each succeeded case once per destination (crash-proof: derived from the audit log, so a case that
/// finished just before a crash is queued after the restart), sends what is due, and records every attempt
/// and the final state in the case's audit trail.
public final class OutboxDispatcher: @unchecked Sendable {
    let outbox: Outbox
    let audit: AuditLog
    let destinations: [StoreDestination]
    let callingAETitle: String
    let sender: InstanceSender
    let logger: Logger
    /// When the last pass began: later passes look only at cases started since then less `lookBack` (a case runs
    /// at most its time limit), not the whole history — on a cluster's shared log, every pass of every node.
    private var lastPass: Date?
    public var lookBack: TimeInterval = 24 * 3600

    public init(outbox: Outbox, audit: AuditLog, destinations: [StoreDestination], callingAETitle: String, sender: InstanceSender,
                logger: Logger = Logger(label: "nnseg.serve.outbox")) {
        self.outbox = outbox
        self.audit = audit
        self.destinations = destinations
        self.callingAETitle = callingAETitle
        self.sender = sender
        self.logger = logger
    }

    /// Queues the outputs of every succeeded case (finished since the outbox was created) not queued yet.
    public func enqueueFinishedCases() throws {
        guard !destinations.isEmpty else { return }
        let since = try outbox.createdAt()
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let passStarted = Date()
        let window = lastPass.map { $0.addingTimeInterval(-lookBack) }
        defer { lastPass = passStarted }
        for c in try audit.cases(AuditLog.Filter(since: window, status: CaseStatus.succeeded.rawValue)) {
            let finished = formatter.date(from: c.finishedAt) ?? ISO8601DateFormatter().date(from: c.finishedAt) ?? .distantPast
            guard finished >= since, try !outbox.isQueued(caseID: c.caseID) else { continue }
            var outputs: [String: String] = [:]
            for event in try audit.events(caseID: c.caseID) where event.kind == "output" {
                guard let payload = AuditValue.parse(event.payload)?.object, let kind = payload["kind"]?.string, let path = payload["path"]?.string
                else { continue }
                outputs[kind.uppercased()] = path
            }
            for destination in destinations {
                let files = destination.outputs.compactMap { outputs[$0.uppercased()] }
                guard !files.isEmpty else { continue }
                if try outbox.enqueue(caseID: c.caseID, destination: destination, files: files) {
                    try audit.append(caseID: c.caseID, kind: "outbox_queued", payload: [
                        "destination": .string(destination.name), "ae_title": .string(destination.aeTitle),
                        "address": .string("\(destination.host):\(destination.port)"), "outputs": .array(destination.outputs.map { .string($0) }),
                    ])
                    logger.info("outputs queued", metadata: ["case": "\(c.caseID)", "destination": "\(destination.name)"])
                }
            }
        }
    }

    /// Sends every due item once; true when something was attempted.
    @discardableResult
    public func sendDue(now: Date = Date()) throws -> Bool {
        let due = try outbox.due(now: now)
        for item in due {
            let missing = item.files.filter { !FileManager.default.fileExists(atPath: $0) }
            let result: (instances: [SentInstance], error: String?) = missing.isEmpty
                ? sender.send(item.files, to: item.destination, callingAETitle: callingAETitle)
                : ([], "output files missing: \(missing.joined(separator: ", "))")
            var error = result.error
            if error == nil, let refused = result.instances.first(where: { !$0.isStored }) {
                error = "the peer refused \(refused.sopInstanceUID.isEmpty ? refused.path : refused.sopInstanceUID)"
                    + (refused.status.map { String(format: " (status 0x%04X)", $0) } ?? " (not sent)")
            }
            let updated = try outbox.recordAttempt(item.id, error: error)
            try audit.append(caseID: item.caseID, kind: "send_attempt", payload: [
                "outbox_item": .int(item.id), "destination": .string(item.destination.name), "attempt": .int(Int64(updated.attempts)),
                "outcome": .string(error == nil ? "sent" : "failed"), "error": error.map { .string($0) } ?? .null,
                "instances": .array(result.instances.map { .object(["sop_uid": .string($0.sopInstanceUID),
                                                                    "status": $0.status.map { .int(Int64($0)) } ?? .null]) }),
                "next_attempt_at": updated.state == .pending ? .string(ISO8601DateFormatter().string(from: updated.nextAttemptAt)) : .null,
            ])
            switch updated.state {
            case .sent:
                try audit.append(caseID: item.caseID, kind: "sent", payload: [
                    "outbox_item": .int(item.id), "destination": .string(item.destination.name), "attempts": .int(Int64(updated.attempts)),
                    "sop_uids": .array(result.instances.map { .string($0.sopInstanceUID) }),
                ])
                logger.notice("outputs sent", metadata: ["case": "\(item.caseID)", "destination": "\(item.destination.name)",
                                                         "attempts": "\(updated.attempts)"])
            case .failed:
                try audit.append(caseID: item.caseID, kind: "send_failed", payload: [
                    "outbox_item": .int(item.id), "destination": .string(item.destination.name), "attempts": .int(Int64(updated.attempts)),
                    "error": .string(error ?? ""),
                ])
                logger.error("sending gave up", metadata: ["case": "\(item.caseID)", "destination": "\(item.destination.name)", "error": "\(error ?? "")"])
            case .pending, .cancelled:
                logger.warning("sending failed; will retry", metadata: ["case": "\(item.caseID)", "destination": "\(item.destination.name)",
                                                                         "attempt": "\(updated.attempts)", "error": "\(error ?? "")"])
            }
        }
        return !due.isEmpty
    }
}
