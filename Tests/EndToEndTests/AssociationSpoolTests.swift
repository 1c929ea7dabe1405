import Foundation
import Testing
import TestSupport
import WatchService

/// Issue #15: the network intake's rule on spool folders written by hand (deterministic): a released
/// association's series waits while an open association holds instances of it; an association left open by
/// a receiver that died is treated as aborted; SEG/RTSTRUCT are stored, not processed.
struct AssociationSpoolTests {
    final class Alive: @unchecked Sendable {
        var pids: Set<Int32> = []
    }

    func association(_ spool: URL, _ name: String, pid: Int32, entries: [(file: String, sopClass: String, series: String)], state: String?) throws {
        let folder = spool.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("\(pid)\n".utf8).write(to: folder.appendingPathComponent("OPEN"))
        var manifest = ""
        for e in entries {
            try Data("DICM".utf8).write(to: folder.appendingPathComponent(e.file))
            manifest += "\(e.file)\t\(e.sopClass)\t1.2.3\t\(e.series)\t1.2.3.\(e.file)\n"
        }
        try Data(manifest.utf8).write(to: folder.appendingPathComponent("manifest.tsv"))
        if let state { try Data("reason=test\n".utf8).write(to: folder.appendingPathComponent(state)) }
    }

    @Test func openAssociationsHoldTheirSeriesAndDeadOnesAreAborted() throws {
        let dir = try SharedData.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: dir) }
        let spool = dir.appendingPathComponent("associations"), incoming = dir.appendingPathComponent("incoming")
        let alive = Alive()
        alive.pids = [100]
        let gate = try AssociationSpool(spool: spool, incoming: incoming, aborted: dir.appendingPathComponent("aborted"),
                                        stored: dir.appendingPathComponent("stored"), isReceiving: { alive.pids.contains($0) })
        let ct = "1.2.840.10008.5.1.4.1.1.2", seg = "1.2.840.10008.5.1.4.1.1.66.4"
        try association(spool, "100-1", pid: 100, entries: [("1.dcm", ct, "S"), ("2.dcm", ct, "T"), ("3.dcm", seg, "U")], state: "RELEASED")
        try association(spool, "100-2", pid: 100, entries: [("1.dcm", ct, "S")], state: nil)       // still receiving S
        try association(spool, "99-1", pid: 99, entries: [("1.dcm", ct, "V")], state: nil)         // its receiver died
        try gate.transfer()
        #expect(gate.seriesInFlight() == ["S"])
        let fm = FileManager.default
        #expect(try fm.contentsOfDirectory(atPath: incoming.appendingPathComponent("net-100-1").path) == ["2.dcm"], "T moves, S waits")
        #expect(fm.fileExists(atPath: spool.appendingPathComponent("100-1/1.dcm").path))
        #expect(fm.fileExists(atPath: dir.appendingPathComponent("stored/U/100-1-3.dcm").path), "a SEG is stored, not processed")
        #expect(fm.fileExists(atPath: dir.appendingPathComponent("aborted/99-1/1.dcm").path), "a dead receiver's open association is aborted")
        #expect(!fm.fileExists(atPath: spool.appendingPathComponent("99-1").path))
        // The second association releases: S moves, both folders go.
        try Data("reason=test\n".utf8).write(to: spool.appendingPathComponent("100-2/RELEASED"))
        try gate.transfer()
        #expect(gate.seriesInFlight().isEmpty)
        #expect(try fm.contentsOfDirectory(atPath: incoming.appendingPathComponent("net-100-1").path).sorted() == ["1.dcm", "2.dcm"])
        #expect(try fm.contentsOfDirectory(atPath: incoming.appendingPathComponent("net-100-2").path) == ["1.dcm"])
        #expect(try fm.contentsOfDirectory(atPath: spool.path).isEmpty)
        // Moved files carry the time of the move (the quiet period counts from the release).
        let modified = try fm.attributesOfItem(atPath: incoming.appendingPathComponent("net-100-2/1.dcm").path)[.modificationDate] as? Date
        #expect(abs(modified?.timeIntervalSinceNow ?? 100) < 30)
    }
}
