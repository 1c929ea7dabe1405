import AuditLog
import Digest
import Foundation

/// One pseudonym key and one signing key pair per test process (#18), in a temporary folder: in-process tests
/// pass ``auditKeys``-style paths to `AuditKeys.load`, and every `nnseg` the tests start gets them through
/// ``environment`` (as a site would set NNSEG_PSEUDONYM_KEY / NNSEG_SIGNING_KEY).
public enum TestKeys {
    static let folder: URL = {
        (try? SharedData.temporaryDirectory("nnseg-test-keys"))
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("nnseg-test-keys-\(getpid())")
    }()

    public static let pseudonymPath: String = {
        let path = folder.appendingPathComponent("pseudonym.key").path
        _ = try? PseudonymKey.create(at: path)
        return path
    }()

    public static let signingPath: String = {
        let path = folder.appendingPathComponent("audit-signing.key").path
        _ = try? SigningKey.create(at: path, publicKeyAt: path + ".pub")
        return path
    }()

    public static var publicKeyPath: String { signingPath + ".pub" }

    /// Both keys, for an in-process `AuditLog` (`anchor`: an anchor file, when the test wants one).
    public static func auditKeys(anchor: URL? = nil, checkpointEvery: Int = 1000) throws -> AuditKeys {
        AuditKeys(pseudonym: try PseudonymKey(contentsOf: pseudonymPath), signing: try SigningKey(contentsOf: signingPath),
                  anchor: anchor, checkpointEvery: checkpointEvery)
    }

    /// The variables a site sets for `nnseg` (no anchor: tests that want one name their own).
    public static var environment: [String: String] {
        ["NNSEG_PSEUDONYM_KEY": pseudonymPath, "NNSEG_SIGNING_KEY": signingPath]
    }
}
