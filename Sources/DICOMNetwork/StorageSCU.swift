import CDCMTKNet
import Foundation

/// A peer that receives outputs by C-STORE (a PACS, a planning system).
public struct StoreDestination: Sendable, Equatable, Codable {
    public var name: String
    public var aeTitle: String
    public var host: String
    public var port: Int
    /// Which outputs it receives: "SEG", "RTSTRUCT".
    public var outputs: [String]
    /// Send over TLS (with the node's certificate and trusted CAs).
    public var tls: Bool

    enum CodingKeys: String, CodingKey { case name, aeTitle, host, port, outputs, tls }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        aeTitle = try c.decode(String.self, forKey: .aeTitle)
        host = try c.decode(String.self, forKey: .host)
        port = try c.decode(Int.self, forKey: .port)
        outputs = try c.decode([String].self, forKey: .outputs)
        tls = try c.decodeIfPresent(Bool.self, forKey: .tls) ?? false
    }

    public init(name: String, aeTitle: String, host: String, port: Int, outputs: [String], tls: Bool = false) {
        self.tls = tls
        self.name = name
        self.aeTitle = aeTitle
        self.host = host
        self.port = port
        self.outputs = outputs
    }
}

/// One file's outcome of a send.
public struct SentInstance: Sendable, Equatable {
    public var path: String
    /// DIMSE status: 0 success, 0xB000… warnings (stored), others refused; nil when it was not sent.
    public var status: Int?
    public var sopInstanceUID: String

    public init(path: String, status: Int?, sopInstanceUID: String) {
        self.path = path
        self.status = status
        self.sopInstanceUID = sopInstanceUID
    }

    /// Stored by the peer (success or warning).
    public var isStored: Bool { status.map { $0 == 0 || ($0 & 0xF000) == 0xB000 } ?? false }
}

public struct StorageSCUError: Error, CustomStringConvertible {
    public let detail: String
    public let instances: [SentInstance]
    public var description: String { "SEND_FAILED: \(detail)" }
}

/// C-STORE SCU: sends files to a destination in one association.
public enum StorageSCU {
    public static func send(_ files: [String], to destination: StoreDestination, callingAETitle: String, timeout: Int = 30,
                            tls: TLSSettings? = nil) throws -> [SentInstance] {
        var results = [nnseg_scu_result](repeating: nnseg_scu_result(), count: files.count)
        var error = [CChar](repeating: 0, count: 512)
        let pointers = files.map { strdup($0) }
        defer { pointers.forEach { free($0) } }
        func call(_ tlsConfig: UnsafePointer<nnseg_tls_config>?) -> Int32 {
            pointers.map { UnsafePointer($0) }.withUnsafeBufferPointer { list in
                nnseg_scu_send(callingAETitle, destination.aeTitle, destination.host, Int32(destination.port), Int32(timeout), tlsConfig,
                               list.baseAddress, Int32(files.count), &results, &error, error.count)
            }
        }
        let status = tls.map { $0.withC { call($0) } } ?? call(nil)
        let instances = zip(files, results).map { path, r -> SentInstance in
            var r = r
            let uid = withUnsafeBytes(of: &r.sop_instance_uid) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return SentInstance(path: path, status: r.status < 0 ? nil : Int(r.status), sopInstanceUID: uid)
        }
        if status != 0 {
            throw StorageSCUError(detail: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), instances: instances)
        }
        return instances
    }
}
