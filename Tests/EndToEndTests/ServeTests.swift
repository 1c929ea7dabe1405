import Foundation
import NIfTI
import Testing
import TestSupport
import TorchCheckpoint
import WatchService
#if canImport(Glibc)
import Glibc
#endif

/// Issue #15: `nnseg serve` as a DICOM node, with DCMTK's echoscu/storescu as the peers on a loopback port.
/// Every wait is on an observable event (an audit row, a folder) with a deadline.
@Suite(.serialized, .ownThreads)
struct ServeTests {
    final class Node {
        let dir: URL, work: URL, outgoing: URL, database: URL
        let port: Int
        var process: Process?

        let site: URL

        init(_ name: String, quietPeriod: Double = 1, pollInterval: Double = 0.2, node: String = "allowedCallers: [SCANNER]", destinationPort: Int? = nil,
             destinationTLS: Bool = false, reuse existing: URL? = nil, siteExtra: String = "", prepare: (URL) throws -> Void = { _ in },
             echoArguments: (URL) -> [String] = { _ in [] }) throws {
            dir = try existing ?? SharedData.temporaryDirectory(name)
            work = dir.appendingPathComponent("work")
            outgoing = dir.appendingPathComponent("out")
            database = dir.appendingPathComponent("audit.sqlite")
            site = dir.appendingPathComponent("site.yaml")
            if existing != nil {
                port = Int(try String(contentsOf: dir.appendingPathComponent("port"), encoding: .utf8))!
                process = try CommandRunner.launch(["serve", "--site", site.path, "--log-level", "info"], log: log)
                try awaitEcho()
                return
            }
            port = try WatchDeliveryTests.freeLoopbackPort()
            try Data("\(port)".utf8).write(to: dir.appendingPathComponent("port"))
            try prepare(dir)
            let demo = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
            let profile = dir.appendingPathComponent("profile.yaml")
            let routing = destinationPort.map { "destinations:\n  - {name: pacs, aeTitle: PACS, host: 127.0.0.1, port: \($0), outputs: [SEG, RTSTRUCT], tls: \(destinationTLS)}\n" } ?? ""
            let text = demo.replacingOccurrences(of: "../Fixtures/demo/model", with: SharedData.fixtures.appendingPathComponent("demo/model").path)
                .replacingOccurrences(of: "mirroring: true", with: "mirroring: false") + routing
            try Data(text.utf8).write(to: profile)
            try Data("""
                profile: profile.yaml
                node: {aeTitle: NNSEG, port: \(port), \(node)}
                folders: {work: work, outgoing: out}
                intake: {quietPeriod: \(quietPeriod), pollInterval: \(pollInterval)}
                outbox: {firstRetryDelay: 0.5, maxRetryDelay: 1}
                auditDatabase: audit.sqlite
                \(siteExtra)
                """.utf8).write(to: site)
            process = try CommandRunner.launch(["serve", "--site", site.path, "--log-level", "info"], log: log)
            try awaitEcho(extra: echoArguments(dir))
        }

        /// The node's standard output and error (`serve.log` in its folder).
        var log: URL { dir.appendingPathComponent("serve.log") }

        /// The end of the node's log, for a failing expectation's comment.
        var logTail: String { CommandRunner.tail(log) }

        /// Ready when it answers C-ECHO: waits for that event (not a fixed time), and stops waiting at once if the
        /// node exited. A node that is not up after two minutes, or exited, fails the test with its log's end.
        func awaitEcho(extra: [String] = [], required: Bool = true) throws {
            let answered = waitUntil(120) { (try? self.echo("SCANNER", extra: extra).status) == 0 || process?.isRunning != true }
            if process?.isRunning != true {
                throw NodeError("nnseg serve exited (status \(process?.terminationStatus ?? -1)) before answering C-ECHO:\n\(logTail)")
            }
            if required && !answered { throw NodeError("nnseg serve did not answer C-ECHO within 120 s:\n\(logTail)") }
        }

        struct NodeError: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

        var keep = SharedData.keepsTestFiles

        deinit {
            stop()
            if !keep { try? FileManager.default.removeItem(at: dir) }
        }

        /// The audit events of one kind, across all cases (`audit show` lines: `#id time kind payload`).
        func events(_ kind: String) throws -> [String] {
            var found: [String] = []
            for c in try cases() {
                guard let id = c["case_id"] as? String else { continue }
                let shown = try CommandRunner.nnseg(["audit", "show", id, "--database", database.path])
                found += shown.stdout.split(separator: "\n").map(String.init).filter {
                    $0.split(separator: " ", maxSplits: 3).dropFirst(2).first.map(String.init) == kind
                }
            }
            return found
        }

        func stop() {
            guard let p = process, p.isRunning else { return }
            kill(p.processIdentifier, SIGTERM)
            p.waitForExit()
        }

        func echo(_ caller: String, extra: [String] = []) throws -> CommandRunner.Result {
            try CommandRunner.run("/usr/bin/echoscu", extra + ["-aet", caller, "-aec", "NNSEG", "127.0.0.1", "\(port)"])
        }

        func store(_ files: [URL], caller: String = "SCANNER", extra: [String] = []) throws -> CommandRunner.Result {
            try CommandRunner.run("/usr/bin/storescu", extra + ["-aet", caller, "-aec", "NNSEG", "127.0.0.1", "\(port)"] + files.map(\.path))
        }

        func cases() throws -> [[String: Any]] {
            guard FileManager.default.fileExists(atPath: database.path) else { return [] }
            let export = try CommandRunner.nnseg(["audit", "export", "--database", database.path, "--format", "json"])
            return (try? JSONSerialization.jsonObject(with: Data(export.stdout.utf8)) as? [[String: Any]]) ?? []
        }

        /// Received images not yet claimed: in the spool or in the incoming folder.
        func pendingImages() -> Int {
            var count = 0
            for root in ["associations", "incoming"] {
                let walker = FileManager.default.enumerator(atPath: work.appendingPathComponent(root).path)
                while let path = walker?.nextObject() as? String {
                    if path == ".nnseg" { walker?.skipDescendants(); continue }
                    if path.hasSuffix(".dcm") { count += 1 }
                }
            }
            return count
        }

        func folder(_ name: String) -> [String] { entries(work.appendingPathComponent(name)) }

        /// A folder's visible entries, sorted.
        func entries(_ folder: URL) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        }

        @discardableResult
        func waitUntil(_ timeout: TimeInterval = 90, _ condition: () throws -> Bool) rethrows -> Bool {
            try TestSupport.waitUntil(timeout, condition)
        }
    }

    static let files = WatchDeliveryTests.seriesFiles

    @Test(.timeLimit(.minutes(3)))
    func aSeriesSentByStorescuIsOneCaseAndUnknownCallersAreRejected() throws {
        let node = try Node("serve-basic")
        #expect(try node.echo("SCANNER").status == 0)
        let stranger = try node.echo("STRANGER")
        #expect(stranger.status != 0)
        #expect((stranger.stdout + stranger.stderr).contains("Calling AE Title Not Recognized"), "\(stranger.stderr)")
        let refused = try node.store(Array(Self.files.prefix(2)), caller: "STRANGER")
        #expect(refused.status != 0)
        let sent = try node.store(Self.files)
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(try node.waitUntil { try node.cases().first?["status"] as? String == "SUCCEEDED" })
        let cases = try node.cases()
        #expect(cases.count == 1)
        let outputs = try FileManager.default.contentsOfDirectory(atPath: node.outgoing.path)
        #expect(outputs.count == 1)
        #expect(node.folder("associations").isEmpty, "the spool is emptied once delivered")
        #expect(node.folder("aborted").isEmpty)
        #expect(try CommandRunner.nnseg(["audit", "verify", "--database", node.database.path]).status == 0)
    }

    /// A series split over two associations (one after the other, within the quiet period) is one case; an
    /// association aborted mid-series leaves nothing processed and nothing in quarantine.
    @Test(.timeLimit(.minutes(3)))
    func twoAssociationsAreOneCaseAndAnAbortedOneYieldsNothing() throws {
        let node = try Node("serve-split", quietPeriod: 4)
        let files = Self.files
        // An association that aborts after sending half the series: kept in aborted/, not processed.
        let aborted = try node.store(Array(files.prefix(16)), extra: ["--abort"])
        #expect(aborted.status == 0, "\(aborted.stderr)")
        #expect(node.waitUntil(30) { node.folder("aborted").count == 1 })
        // The whole series in two associations.
        #expect(try node.store(Array(files.prefix(12))).status == 0)
        #expect(try node.store(Array(files.dropFirst(12))).status == 0)
        #expect(try node.waitUntil { try node.cases().contains { $0["status"] as? String == "SUCCEEDED" } && node.pendingImages() == 0 })
        let cases = try node.cases()
        #expect(cases.count == 1, "\(cases)")
        #expect(cases.first?["status"] as? String == "SUCCEEDED")
        let abortedFolder = node.work.appendingPathComponent("aborted").appendingPathComponent(node.folder("aborted")[0])
        let kept = try FileManager.default.contentsOfDirectory(atPath: abortedFolder.path).filter { $0.hasSuffix(".dcm") }
        #expect(kept.count == 16, "the aborted association's instances are kept as received")
        #expect(node.folder("incoming/.nnseg/quarantine").isEmpty)
        #expect(node.folder("incoming/.nnseg/held").isEmpty, "no instance of the series was left over as a late arrival")
    }

    /// A storescp that receives on a port into a folder, counting what it was sent.
    final class Destination {
        let folder: URL, log: URL
        let port: Int
        var process: Process?
        init(port: Int, folder: URL) throws {
            self.port = port
            self.folder = folder
            log = folder.appendingPathComponent("storescp.log")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        func start(extra: [String] = []) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/storescp")
            p.arguments = extra + ["-v", "-aet", "PACS", "-od", folder.path, "\(port)"]
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            p.standardOutput = handle
            p.standardError = handle
            try p.run()
            process = p
        }
        /// C-STORE requests it received (a resend would count twice).
        func received() -> Int {
            ((try? String(contentsOf: log, encoding: .utf8)) ?? "").components(separatedBy: "Received Store Request").count - 1
        }
        deinit {
            // SIGKILL: a child of the test runner may inherit a mask that blocks SIGTERM.
            if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitForExit() }
        }
    }

    /// A destination that is down when the case finishes and comes back later gets the outputs once; the
    /// failed attempts are in the audit log.
    @Test(.timeLimit(.minutes(3)))
    func outputsReachADestinationThatComesBackOnce() throws {
        let destinationPort = try WatchDeliveryTests.freeLoopbackPort()
        let node = try Node("serve-outbox", destinationPort: destinationPort)
        let pacs = try Destination(port: destinationPort, folder: node.dir.appendingPathComponent("pacs"))
        #expect(try node.store(Self.files).status == 0)
        #expect(try node.waitUntil { try node.events("send_attempt").count >= 2 }, "attempts while the destination is down")
        #expect(try node.events("sent").isEmpty)
        try pacs.start()
        #expect(try node.waitUntil { try node.events("sent").count == 1 })
        #expect(pacs.received() == 2, "SEG and RTSTRUCT, each once")
        let attempts = try node.events("send_attempt")
        #expect(attempts.count >= 3)
        let list = try CommandRunner.nnseg(["outbox", "list", "--site", node.site.path])
        #expect(list.stdout.contains("\tSENT\t"), "\(list.stdout)")
        let status = try CommandRunner.nnseg(["status", "--site", node.site.path])
        #expect(status.stdout.contains("outbox    PENDING 0 · SENT 1 · FAILED 0 · CANCELLED 0"), "\(status.stdout)")
        #expect(try CommandRunner.nnseg(["audit", "verify", "--database", node.database.path]).status == 0)
    }

    /// nnseg killed (SIGKILL) while the outbox holds an item: after the restart the item is sent, once.
    @Test(.timeLimit(.minutes(3)))
    func theOutboxSurvivesAKill() throws {
        let destinationPort = try WatchDeliveryTests.freeLoopbackPort()
        var node: Node? = try Node("serve-outbox-kill", destinationPort: destinationPort)
        let dir = node!.dir
        #expect(try node!.store(Self.files).status == 0)
        #expect(try node!.waitUntil { try node!.events("send_attempt").count >= 1 })
        node!.keep = true
        kill(node!.process!.processIdentifier, SIGKILL)
        node!.process!.waitForExit()
        node = nil
        let pacs = try Destination(port: destinationPort, folder: dir.appendingPathComponent("pacs"))
        try pacs.start()
        let restarted = try Node("serve-outbox-kill", destinationPort: destinationPort, reuse: dir)
        #expect(try restarted.waitUntil { try restarted.events("sent").count == 1 })
        #expect(pacs.received() == 2)
        #expect(try restarted.cases().count == 1)
    }

    /// A throw-away CA (made with openssl) with certificates for the node, a client and a PACS, and a
    /// client certificate from another CA.
    static func makeCertificates(in dir: URL) throws {
        func openssl(_ arguments: [String]) throws {
            let r = try CommandRunner.run("/usr/bin/openssl", arguments)
            #expect(r.status == 0, "openssl \(arguments.joined(separator: " ")): \(r.stderr)")
        }
        let path = { (name: String) in dir.appendingPathComponent(name).path }
        for ca in ["ca", "rogueca"] {
            try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(ca).key"), "-out", path("\(ca).crt"), "-days", "2",
                         "-subj", "/CN=nnseg-test-\(ca)"])
        }
        for (name, ca) in [("node", "ca"), ("client", "ca"), ("pacs", "ca"), ("rogue", "rogueca")] {
            try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=localhost"])
            try openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).crt"), "-CAkey", path("\(ca).key"), "-CAcreateserial",
                         "-out", path("\(name).crt"), "-days", "2"])
        }
    }

    /// TLS with the test CA: a client with a certificate from it is served; one from another CA, and one
    /// without TLS, are refused; outputs go to a TLS destination.
    @Test(.timeLimit(.minutes(3)))
    func tlsWithTheTestCA() throws {
        let destinationPort = try WatchDeliveryTests.freeLoopbackPort()
        let tlsArguments = { (d: URL, name: String) in ["+tls", d.appendingPathComponent("\(name).key").path, d.appendingPathComponent("\(name).crt").path,
                                                        "+cf", d.appendingPathComponent("ca.crt").path] }
        let node = try Node("serve-tls", node: "allowedCallers: [SCANNER], tls: {certificate: node.crt, privateKey: node.key, trustedCertificates: [ca.crt]}",
                            destinationPort: destinationPort, destinationTLS: true, prepare: { try Self.makeCertificates(in: $0) },
                            echoArguments: { tlsArguments($0, "client") })
        let d = node.dir
        let tls = { (name: String) in tlsArguments(d, name) }
        #expect(node.waitUntil(30) { (try? node.echo("SCANNER", extra: tls("client")).status) == 0 })
        #expect(try node.echo("SCANNER", extra: tls("rogue")).status != 0, "a certificate from another CA is refused")
        #expect(try node.echo("SCANNER").status != 0, "an association without TLS is refused")
        let pacs = try Destination(port: destinationPort, folder: d.appendingPathComponent("pacs"))
        try pacs.start(extra: ["+tls", d.appendingPathComponent("pacs.key").path, d.appendingPathComponent("pacs.crt").path,
                               "+cf", d.appendingPathComponent("ca.crt").path])
        let sent = try node.store(Self.files, extra: tls("client"))
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(try node.waitUntil { try node.events("sent").count == 1 }, "outputs sent over TLS")
        #expect(pacs.received() == 2)
    }

    /// Opens an association by hand (A-ASSOCIATE-RQ for Verification) and returns the socket with the
    /// answer's PDU type: 0x02 accepted, 0x03 rejected.
    static func openAssociation(port: Int, calling: String) throws -> (socket: Int32, answer: UInt8) {
        func ae(_ s: String) -> [UInt8] { Array((s + String(repeating: " ", count: 16)).utf8.prefix(16)) }
        func item(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { [type, 0, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body }
        let context = item(0x10, Array("1.2.840.10008.3.1.1.1".utf8))
        let presentation = item(0x20, [1, 0, 0, 0] + item(0x30, Array("1.2.840.10008.1.1".utf8)) + item(0x40, Array("1.2.840.10008.1.2".utf8)))
        let user = item(0x50, item(0x51, [0, 0, 0x40, 0]))
        let body: [UInt8] = [0, 1, 0, 0] + ae("NNSEG") + ae(calling) + [UInt8](repeating: 0, count: 32) + context + presentation + user
        let length = UInt32(body.count)
        let pdu: [UInt8] = [0x01, 0, UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff), UInt8(length & 0xff)] + body
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected, pdu.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == pdu.count else { close(fd); throw CocoaError(.fileReadUnknown) }
        var answer: UInt8 = 0
        guard recv(fd, &answer, 1, 0) == 1 else { close(fd); throw CocoaError(.fileReadUnknown) }
        return (fd, answer)
    }

    /// The intake scans the spool while associations open: a spool folder must never be seen before its
    /// OPEN marker (it was taken for a dead receiver's, removed, and the association refused as "local limit
    /// exceeded" — about 3 echoes in 100 with a 50 ms scan).
    @Test(.timeLimit(.minutes(3)))
    func associationsOpeningDuringSpoolScansAreNeverRefused() throws {
        let node = try Node("serve-scan-race", pollInterval: 0.05)
        var refused: [String] = []
        for _ in 0..<150 {
            let echo = try node.echo("SCANNER")
            if echo.status != 0 { refused.append(echo.stderr) }
        }
        #expect(refused.isEmpty, "\(refused.count) of 150 echoes refused: \(refused.first ?? "")")
    }

    /// More associations than `maxAssociations` at once are rejected (transient: local limit exceeded); the
    /// held one is served, and one is accepted again once it is gone.
    @Test(.timeLimit(.minutes(2)))
    func associationsBeyondTheLimitAreRejected() throws {
        let node = try Node("serve-limit", node: "allowedCallers: [SCANNER], maxAssociations: 1")
        // The readiness echo's association ends on the server a moment after echoscu returns: until its thread
        // has finished, it still counts against the limit of one. Open the held association once it has.
        var held = try Self.openAssociation(port: node.port, calling: "SCANNER")
        _ = try node.waitUntil(30) {
            if held.answer == 0x02 { return true }
            close(held.socket)
            held = try Self.openAssociation(port: node.port, calling: "SCANNER")
            return held.answer == 0x02
        }
        #expect(held.answer == 0x02, "the first association is accepted")
        let second = try node.echo("SCANNER")
        #expect(second.status != 0)
        #expect((second.stdout + second.stderr).contains("Local Limit Exceeded"), "\(second.stderr)")
        close(held.socket)
        #expect(node.waitUntil(30) { (try? node.echo("SCANNER").status) == 0 }, "accepted again after the held association ended")
        #expect(node.waitUntil(10) { node.folder("associations").isEmpty })
        #expect(node.folder("aborted").isEmpty, "an association that received nothing leaves nothing behind")
    }

    /// Under the free-disk floor every C-STORE is answered "out of resources" (A700) and nothing is written.
    @Test(.timeLimit(.minutes(2)))
    func storesUnderTheDiskFloorAreRefusedAndNothingIsWritten() throws {
        let node = try Node("serve-disk", node: "freeDiskFloorMB: 1000000000")
        let sent = try node.store(Array(Self.files.prefix(3)), extra: ["-v", "--no-halt"])
        #expect((sent.stdout + sent.stderr).components(separatedBy: "Received Store Response (Refused: OutOfResources)").count - 1 == 3,
                "\(sent.stderr)")
        #expect(node.waitUntil(20) { node.folder("associations").isEmpty })
        let received = FileManager.default.enumerator(atPath: node.work.path)?.allObjects.compactMap { $0 as? String }.filter { $0.hasSuffix(".dcm") } ?? []
        #expect(received.isEmpty, "\(received)")
        #expect(try node.cases().isEmpty)
    }
}

/// Issue #15 acceptance: storescu → nnseg serve → Orthanc (a real PACS, started on loopback ports by the
/// script): SEG and RTSTRUCT arrive in the source study, referencing the source series and Frame of Reference.
struct NetworkDemoTests {
    @Test(.timeLimit(.minutes(5)))
    func theNetworkDemoDeliversToOrthanc() throws {
        let script = SharedData.repositoryRoot.appendingPathComponent("Ops/demo-network.sh").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script]
        process.environment = ProcessInfo.processInfo.environment.merging(["NNSEG": CommandRunner.executable.path]) { _, new in new }
            .merging(TestKeys.environment) { _, new in new }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitForExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("demo-network: OK: SEG and RTSTRUCT are in Orthanc"), "\(text)")
        #expect(text.contains("audit log intact"))
    }
}

/// Issue #16: `nnseg init-model` writes a model folder with seeded random weights that `predict` loads; the
/// same seed gives the same checkpoint.
struct InitModelTests {
    @Test func anUntrainedModelLoadsAndPredicts() throws {
        let dir = try SharedData.temporaryDirectory("init-model")
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = SharedData.fixtures.appendingPathComponent("demo/model")
        for name in ["a", "b"] {
            let made = try CommandRunner.nnseg(["init-model", "--plans", demo.appendingPathComponent("plans.json").path,
                                                "--dataset-json", demo.appendingPathComponent("dataset.json").path, "--seed", "7",
                                                "-o", dir.appendingPathComponent(name).path])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: SharedData.dataFile("Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz"),
                                         to: input.appendingPathComponent("hippocampus_001_0000.nii.gz"))
        for name in ["a", "b"] {
            let predicted = try CommandRunner.nnseg(["predict", "-i", input.path, "-o", dir.appendingPathComponent("out-\(name)").path,
                                                     "-m", dir.appendingPathComponent(name).path, "-f", "0", "--disable-tta"])
            #expect(predicted.status == 0, "\(predicted.stderr)")
        }
        // Every key nnU-Net's modules register, the reference's count for this architecture (188, as the
        // Hippocampus reference checkpoint), so nnUNetv2_predict loads it too.
        let keys = try TorchCheckpoint(contentsOf: dir.appendingPathComponent("a/fold_0/checkpoint_final.pth"))
            .stateDict(at: "network_weights").map(\.name)
        #expect(keys.count == 188)
        #expect(keys.contains("encoder.stages.0.0.convs.0.all_modules.0.weight") && keys.contains("decoder.encoder.stages.0.0.convs.0.conv.weight"))
        let a = try NIfTIImage(contentsOf: dir.appendingPathComponent("out-a/hippocampus_001.nii.gz"))
        let b = try NIfTIImage(contentsOf: dir.appendingPathComponent("out-b/hippocampus_001.nii.gz"))
        #expect(a.floatVolume().voxels == b.floatVolume().voxels, "the same seed gives the same weights, so the same prediction")
    }
}
