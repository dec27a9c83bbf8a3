import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SessionReplicationDrill
import Testing

/// The drill's judgement, on hand-made ledgers: what counts as lost, stale, unreadable
/// and a violation, and the report's JSON and SVG shapes.
struct DrillLedgerTests {
    static let s0 = String(repeating: "a", count: 32), s1 = String(repeating: "b", count: 32)

    func ack(_ session: Int, _ seq: Int, at t: Double, replicated: Bool = false) -> DrillLedger.Write {
        DrillLedger.Write(session: session, seq: seq, sentAt: t - 0.001, completedAt: t, servedBy: "n1",
                          outcome: .acknowledged(etag: "\"1-x-\(seq)\"", replicated: replicated))
    }

    func read(_ session: Int, at t: Double, _ result: DrillLedger.ReadResult, probe: Bool = false) -> DrillLedger.Read {
        DrillLedger.Read(session: session, sentAt: t, completedAt: t + 0.002, servedBy: "n2", result: result, probe: probe)
    }

    @Test("a write acknowledged and missing from the final state is lost; a 404 loses the session and all its writes")
    func lostWritesAndSessions() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        _ = l.addSession(Self.s1)
        for seq in 0...3 { l.record(ack(0, seq, at: Double(seq))) }
        for seq in 0...1 { l.record(ack(1, seq, at: Double(seq))) }
        // An indeterminate write missing at the end is not lost; a failed one never counted.
        l.record(DrillLedger.Write(session: 0, seq: 4, sentAt: 4, completedAt: 7, servedBy: nil, outcome: .indeterminate("timeout")))
        l.record(DrillLedger.Write(session: 0, seq: 5, sentAt: 5, completedAt: 5, servedBy: "n1", outcome: .failed("503 fenced")))
        l.recordFinal(read(0, at: 10, .state([0, 1, 2])))
        l.recordFinal(read(1, at: 10, .notFound))
        #expect(l.lostWrites.map { "\($0.session.prefix(1))\($0.seq)" } == ["a3", "b0", "b1"])
        #expect(l.lostSessions == [Self.s1])
        #expect(l.unreadableSessions.isEmpty)
        #expect(l.writeCounts == { var c = DrillLedger.WriteCounts(); c.attempted = 8; c.acknowledged = 6; c.failed = 1; c.indeterminate = 1; return c }())
        #expect(l.requestsFailed == 2)
        #expect(l.failedAnswers == ["timeout": 1, "503 fenced": 1])
        // Failed reads of the load count by answer too (final reads do not).
        l.record(read(0, at: 6, .failed("421 misdirected")))
        l.record(read(0, at: 6.5, .failed("421 misdirected")))
        l.record(read(1, at: 6.5, .notFound))
        #expect(l.failedAnswers == ["timeout": 1, "503 fenced": 1, "421 misdirected": 2, "404 session-not-found": 1])
        #expect(l.failedAnswers.values.reduce(0, +) == l.requestsFailed)
    }

    @Test("a session whose final read failed is unreadable, not lost, and is a violation")
    func unreadable() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        l.record(ack(0, 0, at: 0))
        l.recordFinal(read(0, at: 5, .failed("503 session-unavailable")))
        #expect(l.lostWrites.isEmpty && l.lostSessions.isEmpty)
        #expect(l.unreadableSessions == [Self.s0])
        #expect(DrillReport.violations(of: l).first?.contains("could not be read at the end (first: \(Self.s0): 503 session-unavailable from n2)") == true)
    }

    @Test("a read sent after a write was acknowledged and missing it is stale; one sent before is not")
    func staleReads() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        l.record(ack(0, 0, at: 0))
        l.record(ack(0, 1, at: 2))
        l.record(read(0, at: 1.5, .state([0])))      // sent before write 1 was acknowledged
        l.record(read(0, at: 2.5, .state([0, 1])))   // fresh
        l.record(read(0, at: 3, .state([0])))        // stale: misses write 1
        l.record(read(0, at: 4, .failed("503")))     // no answer: not judged
        #expect(l.staleReads.map(\.missing) == [[1]])
        #expect(l.staleReads.first?.missedReplicated == false)
        // Acknowledged `local` (acknowledged mode): counted, not a violation.
        l.recordFinal(read(0, at: 5, .state([0, 1])))
        #expect(DrillReport.violations(of: l).isEmpty)
    }

    @Test("losing or missing a write acknowledged replicated is a violation; so is a stale answer from a resumed node")
    func violations() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        l.record(ack(0, 0, at: 0, replicated: true))
        l.record(ack(0, 1, at: 1, replicated: true))
        l.record(read(0, at: 2, .state([0])))
        l.record(read(0, at: 2.1, .state([0]), probe: true))
        l.recordFinal(read(0, at: 5, .state([0, 1])))
        // A second session loses a write acknowledged replicated.
        _ = l.addSession(Self.s1)
        l.record(ack(1, 0, at: 0, replicated: true))
        l.record(ack(1, 1, at: 1, replicated: true))
        l.recordFinal(read(1, at: 5, .state([0])))
        let v = DrillReport.violations(of: l)
        #expect(v.count == 3, "\(v)")
        #expect(v.contains { $0.hasPrefix("1 write(s) acknowledged replicated were lost") })
        #expect(v.contains { $0.hasPrefix("1 read(s) missed a write acknowledged replicated") })
        #expect(v.contains { $0.hasPrefix("1 read(s) of a resumed node served a session older than what survived") })
        var partitionUnderAny = DrillReport.Expectations()
        partitionUnderAny.resumedNodeNeverStale = false
        #expect(DrillReport.violations(of: l, expecting: partitionUnderAny).count == 2)
    }

    @Test("a resumed node missing only a write that was lost anyway is the loss, not a fencing violation")
    func probeMissingOnlyLostWrites() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        l.record(ack(0, 0, at: 0))
        l.record(ack(0, 1, at: 1))            // acknowledged local, never replicated
        l.record(read(0, at: 3, .state([0]), probe: true))
        l.recordFinal(read(0, at: 5, .state([0])))
        #expect(l.lostWrites.map(\.seq) == [1])
        #expect(l.staleReads.first?.missingSurvivors == [])
        #expect(DrillReport.violations(of: l).isEmpty)
    }

    @Test("per second: requests bucketed by send time, nearest-rank percentiles, empty seconds kept")
    func perSecond() {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        for i in 0..<100 {
            let sent = 0.001 * Double(i)
            l.record(DrillLedger.Write(session: 0, seq: i, sentAt: sent, completedAt: sent + Double(i + 1) / 1000, servedBy: nil,
                                       outcome: i < 90 ? .acknowledged(etag: "e", replicated: false) : .failed("503")))
        }
        l.record(read(0, at: 2.2, .state([])))
        let seconds = l.perSecond
        #expect(seconds.map(\.t) == [0, 1, 2])
        #expect(seconds[0].ok == 90 && seconds[0].errors == 10)
        #expect(abs(seconds[0].p50Ms - 50) < 1e-9 && abs(seconds[0].p99Ms - 99) < 1e-9)
        #expect(seconds[1].ok == 0 && seconds[1].errors == 0)
        #expect(seconds[2].ok == 1)
        #expect(DrillLedger.percentile([], 0.5) == 0)
    }

    @Test("the JSON report carries every key of the contract; the SVG parses and marks the events")
    func reportShapes() throws {
        var l = DrillLedger()
        _ = l.addSession(Self.s0)
        l.record(ack(0, 0, at: 0.5))
        l.recordFinal(read(0, at: 3, .state([0])))
        let report = DrillReport(
            scenario: "kill-primary", config: "c.yaml", mechanism: "SIGKILL", startedAt: "2026-11-29T00:00:00.000Z", durationS: 3,
            sessions: 1, writes: l.writeCounts, acknowledgedWritesLost: 0, sessionsLost: 0, staleReads: 0, requestsFailed: 0,
            timeToDetectMs: 500, timeToPromoteMs: nil, timeToFullReplicationMs: nil,
            lostWrites: [.init(session: Self.s0, etag: "\"e\"", ageAtFaultMs: 12.5, replicated: false)],
            perSecond: l.perSecond,
            mode: "acknowledged", transport: "tcp", repair: true, loadBalancer: "direct", victim: "n1", rate: 10, lagMsP99AtFault: nil,
            sessionsUnreadable: 0, events: [.init(t: 1, what: "fault", detail: "SIGKILL <n1> & more"), .init(t: 1.5, what: "detected", detail: "")],
            staleReadDetails: [], routing: .init(), violations: [])
        let object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        for key in ["scenario", "config", "mechanism", "startedAt", "durationS", "sessions", "writes", "acknowledgedWritesLost", "sessionsLost",
                    "staleReads", "requestsFailed", "timeToDetectMs", "timeToPromoteMs", "timeToFullReplicationMs", "lostWrites", "perSecond"] {
            #expect(object.keys.contains(key), "missing \(key)")
        }
        let writes = try #require(object["writes"] as? [String: Any])
        #expect(Set(writes.keys) == ["attempted", "acknowledged", "acknowledgedReplicated", "failed", "indeterminate"])
        let lost = try #require((object["lostWrites"] as? [[String: Any]])?.first)
        #expect(lost["session"] as? String == Self.s0 && lost["etag"] as? String == "\"e\"" && lost["ageAtFaultMs"] as? Double == 12.5)
        let second = try #require((object["perSecond"] as? [[String: Any]])?.first)
        for key in ["t", "ok", "errors", "p50Ms", "p99Ms"] { #expect(second.keys.contains(key), "perSecond lacks \(key)") }
        #expect(object["timeToPromoteMs"] is NSNull, "a time not seen is null, not absent")

        let svg = report.svg
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "the SVG is well-formed XML: \(parser.parserError.map { "\($0)" } ?? "")")
        #expect(svg.contains(">fault</text>") && svg.contains(">detected</text>"))
        #expect(report.table.contains("no violations"))
    }
}
