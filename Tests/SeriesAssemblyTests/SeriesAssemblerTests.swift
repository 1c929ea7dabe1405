import Foundation
import SeriesAssembly
import Testing

/// The assembly rule on a simulated clock (issue #23): deliveries slower than the quiet period, bursts,
/// files written in two halves, unreadable files in flight, late instances.
struct SeriesAssemblerTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func identity(_ series: String, _ sop: Int) -> DeliveredFileState {
        .identified(InstanceIdentity(studyInstanceUID: "1.2.3", seriesInstanceUID: series, sopInstanceUID: "\(series).\(sop)"))
    }

    /// One poll as the watch service makes it: observe every file, read changed ones, read settled ones whole.
    func poll(_ a: inout SeriesAssembler, _ files: [String: (size: Int, modified: Date, state: DeliveredFileState)], now: Date) -> AssemblyPlan {
        for (id, f) in files where a.observe(id, size: f.size, modified: f.modified, now: now) { a.record(id, f.state) }
        a.retain(only: Set(files.keys))
        for id in a.needingFinalRead(now: now) { a.record(id, files[id]!.state, final: true) }
        return a.plan(now: now)
    }

    @Test func slowDeliveryIsOneSeries() {
        // 32 files, one every 0.25 s, quiet period 1 s, polled every 0.5 s: no claim until the last settles.
        var a = SeriesAssembler(quietPeriod: 1)
        var files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = [:]
        var claims: [ReadySeries] = []
        var delivered = 0
        for tick in 0..<60 {
            let now = t0.addingTimeInterval(Double(tick) * 0.5)
            while delivered < 32 && Double(delivered) * 0.25 <= Double(tick) * 0.5 {
                files["\(delivered).dcm"] = (4752, t0.addingTimeInterval(Double(delivered) * 0.25), identity("S", delivered))
                delivered += 1
            }
            let plan = poll(&a, files, now: now)
            claims += plan.ready
            for r in plan.ready { for f in r.files { files[f] = nil } }
        }
        #expect(claims.count == 1)
        #expect(claims.first?.files.count == 32)
    }

    @Test func burstsWithAPauseShorterThanTheQuietPeriodAreOneSeries() {
        var a = SeriesAssembler(quietPeriod: 3)
        var files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = [:]
        for i in 0..<16 { files["a\(i)"] = (100, t0, identity("S", i)) }
        #expect(poll(&a, files, now: t0).ready.isEmpty)
        #expect(poll(&a, files, now: t0.addingTimeInterval(2.5)).ready.isEmpty)
        for i in 16..<32 { files["a\(i)"] = (100, t0.addingTimeInterval(2.6), identity("S", i)) }
        #expect(poll(&a, files, now: t0.addingTimeInterval(2.6)).ready.isEmpty)
        #expect(poll(&a, files, now: t0.addingTimeInterval(5.0)).ready.isEmpty)
        let plan = poll(&a, files, now: t0.addingTimeInterval(5.7))
        #expect(plan.ready.map(\.files.count) == [32])
    }

    @Test func aFileWrittenInTwoHalvesIsNeitherQuarantinedNorClaimedEarly() {
        var a = SeriesAssembler(quietPeriod: 2)
        var files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = [:]
        for i in 0..<5 { files["\(i)"] = (100, t0, identity("S", i)) }
        // The sixth file: its first half is unreadable (truncated) while the writer pauses for 1.5 s.
        files["5"] = (50, t0, .problem(code: "TRUNCATED", detail: "ends early"))
        var plan = poll(&a, files, now: t0.addingTimeInterval(1.5))
        #expect(plan.ready.isEmpty && plan.problems.isEmpty && plan.unknownInFlight == ["5"])
        files["5"] = (100, t0.addingTimeInterval(1.6), identity("S", 5))
        plan = poll(&a, files, now: t0.addingTimeInterval(1.6))
        #expect(plan.ready.isEmpty && plan.problems.isEmpty)
        plan = poll(&a, files, now: t0.addingTimeInterval(3.7))
        #expect(plan.problems.isEmpty)
        #expect(plan.ready.map(\.files.count) == [6])
    }

    @Test func anUnknownFileInFlightHoldsBackEverySeriesUntilItSettles() {
        var a = SeriesAssembler(quietPeriod: 1)
        var files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = ["x1": (10, t0, identity("X", 1))]
        _ = poll(&a, files, now: t0)
        files["junk"] = (10, t0.addingTimeInterval(0.9), .problem(code: "NOT_DICOM", detail: "text"))
        var plan = poll(&a, files, now: t0.addingTimeInterval(1.2))
        #expect(plan.ready.isEmpty && plan.waiting == ["X": 1] && plan.unknownInFlight == ["junk"])
        plan = poll(&a, files, now: t0.addingTimeInterval(2.1))
        #expect(plan.ready.isEmpty, "junk was first seen at 1.2 s: it settles at 2.2 s")
        plan = poll(&a, files, now: t0.addingTimeInterval(2.2))
        #expect(plan.ready.map(\.seriesInstanceUID) == ["X"])
        #expect(plan.problems.map(\.code) == ["NOT_DICOM"])
    }

    @Test func aCopyKeepingAnOldModificationTimeWaitsFromWhenItWasSeen() {
        var a = SeriesAssembler(quietPeriod: 10)
        let files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = ["old": (10, t0.addingTimeInterval(-3600), identity("S", 1))]
        #expect(poll(&a, files, now: t0).ready.isEmpty)
        #expect(poll(&a, files, now: t0.addingTimeInterval(9)).ready.isEmpty)
        #expect(poll(&a, files, now: t0.addingTimeInterval(10)).ready.count == 1)
    }

    @Test func twoSeriesSettleIndependently() {
        var a = SeriesAssembler(quietPeriod: 1)
        var files: [String: (size: Int, modified: Date, state: DeliveredFileState)] = ["a": (10, t0, identity("A", 1))]
        _ = poll(&a, files, now: t0)
        files["b"] = (10, t0.addingTimeInterval(0.8), identity("B", 1))
        var plan = poll(&a, files, now: t0.addingTimeInterval(1.0))
        #expect(plan.ready.map(\.seriesInstanceUID) == ["A"] && plan.waiting == ["B": 1])
        files["a"] = nil
        plan = poll(&a, files, now: t0.addingTimeInterval(1.9))
        #expect(plan.ready.isEmpty, "b was first seen at 1.0 s")
        plan = poll(&a, files, now: t0.addingTimeInterval(2.0))
        #expect(plan.ready.map(\.seriesInstanceUID) == ["B"])
    }

    @Test func lateInstanceRule() {
        let done = PriorCase(caseID: "c1", outcome: .succeeded, sopInstanceUIDs: ["1", "2", "3"], inputsInQuarantine: false)
        #expect(DeliveryRule.decide(instances: ["4"], priors: [done], reprocessDuplicates: false) == .late(of: "c1"))
        #expect(DeliveryRule.decide(instances: ["4"], priors: [done], reprocessDuplicates: true) == .late(of: "c1"))
        #expect(DeliveryRule.decide(instances: ["2", "3"], priors: [done], reprocessDuplicates: false) == .duplicate(of: "c1"))
        #expect(DeliveryRule.decide(instances: ["2", "3"], priors: [done], reprocessDuplicates: true) == .process)
        #expect(DeliveryRule.decide(instances: ["1", "2", "3", "4"], priors: [done], reprocessDuplicates: false) == .supersede(of: "c1"))
        let failed = PriorCase(caseID: "f1", outcome: .failed, sopInstanceUIDs: nil, inputsInQuarantine: true)
        #expect(DeliveryRule.decide(instances: ["9"], priors: [failed], reprocessDuplicates: false) == .reassemble(from: "f1"))
        let cleared = PriorCase(caseID: "f1", outcome: .failed, sopInstanceUIDs: nil, inputsInQuarantine: false)
        #expect(DeliveryRule.decide(instances: ["9"], priors: [cleared], reprocessDuplicates: false) == .process)
        #expect(DeliveryRule.decide(instances: ["9"], priors: [], reprocessDuplicates: false) == .process)
        // A success anywhere in the history wins over a later failure or hold.
        let held = PriorCase(caseID: "h1", outcome: .other, sopInstanceUIDs: nil, inputsInQuarantine: false)
        #expect(DeliveryRule.decide(instances: ["5"], priors: [held, done], reprocessDuplicates: false) == .late(of: "c1"))
    }
}
