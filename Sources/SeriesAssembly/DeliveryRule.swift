/// An earlier case of the same series, as the audit log records it.
public struct PriorCase: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        case succeeded, failed, other
    }

    public var caseID: String
    public var outcome: Outcome
    /// The SOP Instance UIDs that case was claimed with (nil when the record predates this field).
    public var sopInstanceUIDs: Set<String>?
    /// For a failed case: its inputs still sit in quarantine and can be re-assembled.
    public var inputsInQuarantine: Bool

    public init(caseID: String, outcome: Outcome, sopInstanceUIDs: Set<String>?, inputsInQuarantine: Bool) {
        self.caseID = caseID
        self.outcome = outcome
        self.sopInstanceUIDs = sopInstanceUIDs
        self.inputsInQuarantine = inputsInQuarantine
    }
}

/// What to do with a ready series, given the earlier cases of the same Series Instance UID.
public enum DeliveryDisposition: Sendable, Equatable {
    /// No earlier case: process it.
    case process
    /// Every instance was in an earlier successful case: record as `DUPLICATE`, do not process.
    case duplicate(of: String)
    /// The whole earlier series again plus new instances: a complete new version, processed as a new case.
    case supersede(of: String)
    /// Instances for a series that was already processed, without the rest of it: never processed alone;
    /// held aside as `LATE_INSTANCE`, pointing at that case.
    case late(of: String)
    /// The earlier case failed and its inputs are in quarantine: process them together with these files
    /// as a new attempt.
    case reassemble(from: String)
}

/// The late-instance rule (Ops/RUNBOOK.md, "Late instances"), shared by every intake.
public enum DeliveryRule {
    /// `priors`: earlier cases of the series, newest first.
    public static func decide(instances: Set<String>, priors: [PriorCase], reprocessDuplicates: Bool) -> DeliveryDisposition {
        if let success = priors.first(where: { $0.outcome == .succeeded }) {
            // Without a record of the earlier instances, a re-delivery is assumed to be the same series.
            let processed = success.sopInstanceUIDs ?? instances
            if instances.isSubset(of: processed) {
                return reprocessDuplicates ? .process : .duplicate(of: success.caseID)
            }
            if instances.isSuperset(of: processed) { return .supersede(of: success.caseID) }
            return .late(of: success.caseID)
        }
        if let latest = priors.first, latest.outcome == .failed, latest.inputsInQuarantine {
            return .reassemble(from: latest.caseID)
        }
        return .process
    }
}
