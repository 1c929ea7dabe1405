import CDCMTKNet
import Foundation

/// DICOM secure transport (TLS) settings, PEM files: our certificate and key, the CAs a peer's certificate
/// must chain to, and whether the peer must present one.
public struct TLSSettings: Sendable, Equatable {
    public var certificate: String?
    public var privateKey: String?
    public var trustedCertificates: [String]
    public var verifyPeer: Bool

    public init(certificate: String?, privateKey: String?, trustedCertificates: [String], verifyPeer: Bool = true) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.trustedCertificates = trustedCertificates
        self.verifyPeer = verifyPeer
    }

    /// The first file that cannot be read, by setting name.
    public func problem() -> String? {
        let fm = FileManager.default
        if let c = certificate, !fm.isReadableFile(atPath: c) { return "certificate: cannot read \(c)" }
        if certificate != nil, privateKey.map({ !fm.isReadableFile(atPath: $0) }) ?? true { return "privateKey: cannot read \(privateKey ?? "(none)")" }
        if let t = trustedCertificates.first(where: { !fm.isReadableFile(atPath: $0) }) { return "trustedCertificates: cannot read \(t)" }
        if verifyPeer && trustedCertificates.isEmpty { return "trustedCertificates: required to verify the peer" }
        return nil
    }

    /// Calls `body` with the C view of these settings (valid only inside `body`).
    func withC<R>(_ body: (UnsafePointer<nnseg_tls_config>) -> R) -> R {
        let strings = [certificate, privateKey].map { $0.map { strdup($0) } ?? nil }
        let trusted = trustedCertificates.map { UnsafePointer(strdup($0)) }
        defer {
            strings.forEach { free($0) }
            trusted.forEach { free(UnsafeMutablePointer(mutating: $0)) }
        }
        return trusted.withUnsafeBufferPointer { list in
            var config = nnseg_tls_config(certificate: strings[0].map { UnsafePointer($0) }, private_key: strings[1].map { UnsafePointer($0) },
                                          trusted: list.baseAddress, trusted_count: Int32(list.count), verify_peer: verifyPeer ? 1 : 0)
            return body(&config)
        }
    }
}

/// What the storage SCP listens as and accepts (issue #15). Validated at the boundary: the C++ side takes
/// these values as they are.
public struct StorageSCPConfiguration: Sendable, Equatable {
    /// Our AE title; an association calling another AE title is rejected (called AE not recognised).
    public var aeTitle: String
    /// IPv4 address to listen on: loopback by default, `0.0.0.0` for every interface.
    public var bindAddress: String
    public var port: Int
    /// Calling AE titles accepted; empty: any (rejected otherwise: calling AE not recognised).
    public var allowedCallers: [String]
    /// Peer IPv4 addresses accepted; empty: any.
    public var allowedHosts: [String]
    public var maximumAssociations: Int
    public var maximumPDU: Int
    /// Under this much free space in the spool a C-STORE is answered A700 (out of resources) and nothing is written.
    public var freeDiskFloorBytes: Int64
    /// One folder per association (see ``AssociationSpool``).
    public var spool: URL
    public var acseTimeout: Int
    /// Seconds an association may stay silent before it is aborted.
    public var dimseTimeout: Int
    /// TLS on every association (nil: plain TCP).
    public var tls: TLSSettings?

    public init(aeTitle: String = "NNSEG", bindAddress: String = "127.0.0.1", port: Int = 11112, allowedCallers: [String] = [],
                allowedHosts: [String] = [], maximumAssociations: Int = 8, maximumPDU: Int = 131_072, freeDiskFloorBytes: Int64 = 1 << 30,
                spool: URL, acseTimeout: Int = 30, dimseTimeout: Int = 120, tls: TLSSettings? = nil) {
        self.aeTitle = aeTitle
        self.bindAddress = bindAddress
        self.port = port
        self.allowedCallers = allowedCallers
        self.allowedHosts = allowedHosts
        self.maximumAssociations = maximumAssociations
        self.maximumPDU = maximumPDU
        self.freeDiskFloorBytes = freeDiskFloorBytes
        self.spool = spool
        self.acseTimeout = acseTimeout
        self.dimseTimeout = dimseTimeout
        self.tls = tls
    }

    /// The first setting that cannot work, by name.
    public func problem() -> String? {
        func isAETitle(_ s: String) -> Bool {
            !s.isEmpty && s.utf8.count <= 16 && s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f && $0 != "\\" }
        }
        if !isAETitle(aeTitle) { return "aeTitle: 1–16 printable characters without a backslash" }
        if let bad = allowedCallers.first(where: { !isAETitle($0) }) { return "allowedCallers: '\(bad)' is not an AE title" }
        var address = in_addr()
        if inet_pton(AF_INET, bindAddress, &address) != 1 { return "bindAddress: '\(bindAddress)' is not an IPv4 address" }
        if let bad = allowedHosts.first(where: { inet_pton(AF_INET, $0, &address) != 1 }) { return "allowedHosts: '\(bad)' is not an IPv4 address" }
        if !(1...65_535).contains(port) { return "port: 1…65535" }
        if !(1...1_000).contains(maximumAssociations) { return "maxAssociations: 1…1000" }
        if !(4_096...131_072).contains(maximumPDU) { return "maxPDU: 4096…131072 bytes" }
        if freeDiskFloorBytes < 0 { return "freeDiskFloorMB: not negative" }
        if let tls {
            if tls.certificate == nil { return "tls.certificate: required for a TLS listener" }
            if let problem = tls.problem() { return "tls." + problem }
        }
        if !(1...3_600).contains(acseTimeout) || !(1...86_400).contains(dimseTimeout) { return "timeouts: 1…3600 s (ACSE), 1…86400 s (DIMSE)" }
        return nil
    }
}

public struct StorageSCPError: Error, CustomStringConvertible {
    public let detail: String
    public var description: String { "SCP_FAILED: \(detail)" }
}

/// DCMTK's network layer behind the shim: a storage SCP that writes every instance atomically into a spool
/// folder per association and marks the folder RELEASED or ABORTED when the association ends.
public enum StorageSCP {
    /// Serves until `stop` is set; `event` receives one JSON object per network event (association,
    /// rejection, end, refused store), from the SCP's threads, one at a time.
    public static func run(_ configuration: StorageSCPConfiguration, stop: UnsafeMutablePointer<Int32>,
                           event: @escaping @Sendable (String) -> Void) throws {
        if let problem = configuration.problem() { throw StorageSCPError(detail: problem) }
        try FileManager.default.createDirectory(at: configuration.spool, withIntermediateDirectories: true)
        final class Box { let event: @Sendable (String) -> Void; init(_ e: @escaping @Sendable (String) -> Void) { event = e } }
        let box = Unmanaged.passRetained(Box(event))
        defer { box.release() }
        var cStrings: [UnsafeMutablePointer<CChar>?] = []
        defer { cStrings.forEach { free($0) } }
        func c(_ s: String) -> UnsafePointer<CChar>? {
            let p = strdup(s)
            cStrings.append(p)
            return UnsafePointer(p)
        }
        let callers = configuration.allowedCallers.map { c($0) }
        let hosts = configuration.allowedHosts.map { c($0) }
        var error = [CChar](repeating: 0, count: 512)
        let status: Int32 = callers.withUnsafeBufferPointer { callerList in
            hosts.withUnsafeBufferPointer { hostList in
                var config = nnseg_scp_config(
                    ae_title: c(configuration.aeTitle), bind_address: c(configuration.bindAddress), port: Int32(configuration.port),
                    allowed_callers: callerList.baseAddress, allowed_caller_count: Int32(callerList.count),
                    allowed_hosts: hostList.baseAddress, allowed_host_count: Int32(hostList.count),
                    max_associations: Int32(configuration.maximumAssociations), max_pdu: UInt32(configuration.maximumPDU),
                    free_disk_floor_bytes: configuration.freeDiskFloorBytes, spool: c(configuration.spool.path),
                    acse_timeout: Int32(configuration.acseTimeout), dimse_timeout: Int32(configuration.dimseTimeout),
                    tls: nil,
                    event: { context, json in
                        guard let context, let json else { return }
                        Unmanaged<Box>.fromOpaque(context).takeUnretainedValue().event(String(cString: json))
                    },
                    event_context: box.toOpaque())
                guard let tls = configuration.tls else { return nnseg_scp_run(&config, stop, &error, error.count) }
                return tls.withC { tlsConfig in
                    config.tls = tlsConfig
                    return nnseg_scp_run(&config, stop, &error, error.count)
                }
            }
        }
        if status != 0 { throw StorageSCPError(detail: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
    }
}
