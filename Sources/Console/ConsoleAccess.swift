import ConfigDecoding
import Foundation
import HummingbirdBcrypt
import Yams

/// What an account may do in the console (#20): auditors read; operators also act (retry or cancel outbox items),
/// and every action is an audit event with the account's name.
public enum ConsoleRole: String, Sendable, CaseIterable, Decodable {
    case `operator`
    case auditor
}

public struct ConsoleAccount: Sendable, Equatable {
    public var name: String
    public var role: ConsoleRole
    /// bcrypt (`$2b$…`), made by `nnseg console hash-password`.
    public var passwordHash: String

    public init(name: String, role: ConsoleRole, passwordHash: String) {
        self.name = name
        self.role = role
        self.passwordHash = passwordHash
    }
}

public struct ConsoleAccessError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let detail: String
    public var description: String { "CONSOLE_ACCESS_INVALID: \(file): \(detail)" }
}

/// Who may use the console: local accounts with bcrypt-hashed passwords, and/or a trusted reverse proxy that
/// authenticates users itself and names them (and their role) in request headers. Read from a YAML file:
///
/// ```yaml
/// accounts:
///   - {name: alice, role: operator, passwordHash: "$2b$12$…"}
///   - {name: audit, role: auditor, passwordHash: "$2b$12$…"}
/// trustedProxy: {userHeader: X-Remote-User, roleHeader: X-Remote-Role}   # only behind a proxy on this host
/// ```
public struct ConsoleAccess: Sendable {
    public var accounts: [String: ConsoleAccount]
    public var trustedUserHeader: String?
    public var trustedRoleHeader: String?

    public init(accounts: [ConsoleAccount], trustedUserHeader: String? = nil, trustedRoleHeader: String? = nil) {
        self.accounts = Dictionary(accounts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.trustedUserHeader = trustedUserHeader
        self.trustedRoleHeader = trustedRoleHeader
    }

    struct Document: Decodable {
        struct Account: Decodable {
            var name: String
            var role: ConsoleRole
            var passwordHash: String
            enum CodingKeys: String, CodingKey, CaseIterable { case name, role, passwordHash }
        }
        struct Proxy: Decodable {
            var userHeader: String
            var roleHeader: String
            enum CodingKeys: String, CodingKey, CaseIterable { case userHeader, roleHeader }
        }
        var accounts: [Account]?
        var trustedProxy: Proxy?
        enum CodingKeys: String, CodingKey, CaseIterable { case accounts, trustedProxy }
    }

    public init(contentsOf url: URL) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ConsoleAccessError(file: url.path, detail: "cannot read the file")
        }
        let document: Document
        do {
            document = try StrictDecoding.decode { try YAMLDecoder().decode(StrictDecoding.Root<Document>.self, from: text).value }
        } catch let issue as ConfigurationIssue {
            throw ConsoleAccessError(file: url.path, detail: issue.description)
        } catch {
            throw ConsoleAccessError(file: url.path, detail: "not valid YAML (\(error))")
        }
        var seen = Set<String>()
        for (i, a) in (document.accounts ?? []).enumerated() {
            guard !a.name.isEmpty, a.name.allSatisfy({ $0.isLetter || $0.isNumber || "._-@".contains($0) }) else {
                throw ConsoleAccessError(file: url.path, detail: "accounts[\(i)].name: letters, digits and . _ - @ only")
            }
            guard a.passwordHash.hasPrefix("$2"), a.passwordHash.count == 60 else {
                throw ConsoleAccessError(file: url.path, detail: "accounts[\(i)].passwordHash: a bcrypt hash ($2b$…, 60 characters; nnseg console hash-password)")
            }
            guard seen.insert(a.name).inserted else { throw ConsoleAccessError(file: url.path, detail: "accounts[\(i)].name: \(a.name) appears twice") }
        }
        self.init(accounts: (document.accounts ?? []).map { ConsoleAccount(name: $0.name, role: $0.role, passwordHash: $0.passwordHash) },
                  trustedUserHeader: document.trustedProxy?.userHeader, trustedRoleHeader: document.trustedProxy?.roleHeader)
    }

    /// The account a user name and password open, if any.
    public func account(name: String, password: String) -> ConsoleAccount? {
        guard let account = accounts[name], Bcrypt.verify(password, hash: account.passwordHash) else { return nil }
        return account
    }

    /// A bcrypt hash for an accounts file.
    public static func hash(password: String, cost: UInt8 = 12) -> String { Bcrypt.hash(password, cost: cost) }
}
