import AuditLog
import SiteProfile

extension CaseProfile {
    /// The audit keys this profile names (each else from its environment variable; see ``AuditKeys/load``).
    public func auditKeys() throws -> AuditKeys {
        try AuditKeys.load(pseudonymKey: pseudonymKeyFile, signingKey: signingKeyFile, anchor: auditAnchor)
    }
}
