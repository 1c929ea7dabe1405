import ArgumentParser
import Digest
import Foundation

/// `nnseg keys init`: the site's keys, outside any database (#18).
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Keys for pseudonyms and audit signatures.",
                                                    subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a pseudonym key (HMAC-SHA256) and/or an Ed25519 signing key pair; secret keys are written 0600, never overwritten.",
            discussion: """
                Name the files in the profile (audit.pseudonymKey, audit.signingKey) or in NNSEG_PSEUDONYM_KEY / NNSEG_SIGNING_KEY.
                Give auditors the public key (<signing key>.pub) for `nnseg audit verify --public-key`. Losing the pseudonym key
                means new pseudonyms no longer match old ones; keep a copy where the site keeps its other secrets.
                """)
        @Option(help: "Where to write a new pseudonym key.") var pseudonymKey: String?
        @Option(help: "Where to write a new signing key (its public key goes to the same path + .pub).") var signingKey: String?

        func validate() throws {
            if pseudonymKey == nil && signingKey == nil { throw ValidationError("name --pseudonym-key and/or --signing-key") }
        }

        func run() throws {
            do {
                if let pseudonymKey {
                    let key = try PseudonymKey.create(at: pseudonymKey)
                    print("pseudonym key  \(pseudonymKey) (id \(key.id), mode 0600)")
                }
                if let signingKey {
                    let key = try SigningKey.create(at: signingKey, publicKeyAt: signingKey + ".pub")
                    print("signing key    \(signingKey) (id \(key.id), mode 0600)")
                    print("public key     \(signingKey).pub (for auditors: nnseg audit verify --public-key)")
                }
            } catch let error as KeyFileError {
                throw CommandOutcome(code: error.code.rawValue, message: error.description)
            }
        }
    }
}
