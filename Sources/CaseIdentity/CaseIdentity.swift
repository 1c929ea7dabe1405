import Foundation

/// nnseg's version, in one place: the CLI's `--version`, the audit log's `software`, and the SoftwareVersions
/// and algorithm version of every SEG and RTSTRUCT written.
public enum SoftwareVersion {
    public static let number = "0.1.0"
    /// As recorded in the audit log and in DICOM outputs.
    public static let described = "nnseg \(number)"
}

/// How a case ended: one row per case in the audit log, with one of these stable values.
public enum CaseStatus: String, Sendable, CaseIterable, Codable {
    /// Processed; outputs written.
    case succeeded = "SUCCEEDED"
    /// Processed; the model found no structure (outputs written, empty).
    case emptyResult = "EMPTY_RESULT"
    /// Refused or failed with a named error; nothing written.
    case failed = "FAILED"
    /// A delivery the watch service could not use (unreadable file, retries exhausted): inputs quarantined.
    case quarantined = "QUARANTINED"
    /// A re-delivery of instances already processed: recorded, not processed again.
    case duplicate = "DUPLICATE"
    /// Late instances of a series already processed: kept aside for the operator (`LATE_INSTANCE`).
    case held = "HELD"

    /// The case produced its outputs.
    public var isSuccess: Bool { self == .succeeded || self == .emptyResult }
    /// The case ended without outputs because of its input or a failure.
    public var isFailure: Bool { self == .failed || self == .quarantined }
}

/// Case IDs, made in one place: `case-<UTC yyyyMMddTHHmmss>-<8 hex>` — sortable by time, unique without
/// coordination.
public enum CaseID {
    public static func make(at date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss"
        return "case-\(f.string(from: date))-\(UUID().uuidString.prefix(8).lowercased())"
    }
}
