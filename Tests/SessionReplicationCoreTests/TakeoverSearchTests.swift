@testable import SessionReplicationCore
import Testing

/// The takeover search's decisions, round by round, under a virtual clock.
@Suite("Takeover search: whom to ask, when to wait, what is final")
struct TakeoverSearchTests {
    let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
    let alive: [String: MemberStatus] = ["n1": .alive, "n3": .alive]
    let peers = ["n1", "n3"]

    func search(_ settings: TakeoverSearch.Settings = .init(), timeout: Duration = .seconds(1)) -> TakeoverSearch {
        TakeoverSearch(id: sampleID, selfName: "n2", settings: settings, handoverTimeout: timeout, now: t0)
    }

    func code(_ step: TakeoverSearch.Step?) -> SessionError.Code? {
        if case .fail(let e)? = step { return e.code }
        return nil
    }

    @Test("an owner is done, a tombstone is final, an adopted handover ends the round")
    func trivialEnds() {
        var s = search()
        #expect(s.next(held: .owner, handedAwayRecently: false, statuses: alive, hint: nil, now: t0) == .done)
        #expect(code(s.next(held: .tombstone, handedAwayRecently: false, statuses: alive, hint: nil, now: t0)) == .sessionNotFound)
        #expect(s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0) == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        #expect(s.answered([:], ownsNow: true, configuredPeers: peers, now: t0) == .done)
    }

    @Test("on the only member of its configuration, a search for a session held nowhere ends at once as not found; with peers it waits")
    func aloneFindsNothingAtOnce() {
        var lone = search(.init(alone: true))
        #expect(code(lone.next(held: .nothing, handedAwayRecently: false, statuses: [:], hint: nil, now: t0)) == .sessionNotFound)
        // The same search with peers configured but none heard from yet waits for them.
        var waiting = search()
        #expect(waiting.next(held: .nothing, handedAwayRecently: false, statuses: [:], hint: nil, now: t0) == .wait(TakeoverSearch.pollInterval))
    }

    @Test("a backup copy asks its live owner; a suspect owner means waiting until the deadline, then unavailable naming it")
    func backupAsksOwner() {
        var s = search()
        #expect(s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
            == .ask(["n1"], timeout: .milliseconds(500)))
        #expect(s.answered([:], ownsNow: false, configuredPeers: peers, now: t0 + .milliseconds(500)) == .wait(TakeoverSearch.pollInterval))
        let suspect: [String: MemberStatus] = ["n1": .suspect, "n3": .alive]
        #expect(s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: suspect, hint: nil, now: t0 + .milliseconds(520))
            == .wait(TakeoverSearch.pollInterval))
        guard case .fail(let e) = s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: suspect, hint: nil, now: t0 + .seconds(1)) else {
            Issue.record("no failure at the deadline"); return
        }
        #expect(e.code == .sessionUnavailable && e.owner == "n1")
    }

    @Test("each round waits at most 500 ms and at least 50 ms, and never past the deadline by more than that")
    func roundTimeouts() {
        var s = search(timeout: .seconds(2))
        #expect(s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0) == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        _ = s.answered([:], ownsNow: false, configuredPeers: peers, now: t0)
        #expect(s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0 + .milliseconds(1_800))
            == .ask(["n1", "n3"], timeout: .milliseconds(200)))
        _ = s.answered([:], ownsNow: false, configuredPeers: peers, now: t0)
        #expect(s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0 + .milliseconds(1_990))
            == .ask(["n1", "n3"], timeout: .milliseconds(50)))
    }

    @Test("a referral wins over the owner a stray copy names, and is followed at once")
    func referralWinsOverStrayCopy() {
        var s = search()
        // The copy names n1, an old owner; n1 says n3 owns it now (n1 holds a backup).
        _ = s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(s.answered(["n1": .backup(sampleStamp, owner: "n3")], ownsNow: false, configuredPeers: peers, now: t0) == nil)
        #expect(s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
            == .ask(["n3"], timeout: .milliseconds(500)))
        #expect(s.knownOwner == "n3")
    }

    @Test("a copy naming this node is no referral")
    func selfIsNoReferral() {
        var s = search()
        _ = s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(s.answered(["n1": .backup(sampleStamp, owner: "n2"), "n3": .none], ownsNow: false, configuredPeers: peers, now: t0)
            == .wait(TakeoverSearch.pollInterval))
    }

    @Test("when the owner a copy names holds nothing, the next round asks every live member")
    func namedOwnerHoldsNothing() {
        var s = search()
        _ = s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(s.answered(["n1": .none], ownsNow: false, configuredPeers: peers, now: t0) == .wait(TakeoverSearch.pollInterval))
        #expect(s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
            == .ask(["n1", "n3"], timeout: .milliseconds(500)))
    }

    @Test("two stray copies referring to each other end at the deadline")
    func referralLoopEnds() {
        var s = search(timeout: .milliseconds(300))
        var now = t0
        var rounds = 0
        var last: TakeoverSearch.Step?
        while rounds < 1_000 {
            rounds += 1
            let step = s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: now)
            guard case .ask(let targets, _) = step else { last = step; break }
            now = now + .milliseconds(10)
            let other = targets == ["n1"] ? "n3" : "n1"
            let answers = Dictionary(uniqueKeysWithValues: targets.map { ($0, HandoverReply.Answer.backup(sampleStamp, owner: other)) })
            if let end = s.answered(answers, ownsNow: false, configuredPeers: peers, now: now) { last = end; break }
        }
        #expect(code(last) == .sessionUnavailable)
        #expect(rounds > 20 && rounds < 40, "\(rounds) rounds of 10 ms in 300 ms")
    }

    @Test("not-found only when every member answered none, none is suspect and every configured member is accounted for")
    func authoritativeNotFound() {
        var s = search()
        _ = s.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(code(s.answered(["n1": .none, "n3": .none], ownsNow: false, configuredPeers: peers, now: t0)) == .sessionNotFound)

        // A configured member this node has not heard of yet (it just rejoined): not final.
        var rejoined = search()
        _ = rejoined.next(held: .nothing, handedAwayRecently: false, statuses: ["n1": .alive], hint: nil, now: t0)
        #expect(rejoined.answered(["n1": .none], ownsNow: false, configuredPeers: peers, now: t0) == .wait(TakeoverSearch.pollInterval))

        // A dead member is accounted for.
        var dead = search()
        _ = dead.next(held: .nothing, handedAwayRecently: false, statuses: ["n1": .alive, "n3": .dead], hint: nil, now: t0)
        #expect(code(dead.answered(["n1": .none], ownsNow: false, configuredPeers: peers, now: t0)) == .sessionNotFound)

        // A suspect member may own it: not final.
        var suspect = search()
        #expect(suspect.next(held: .nothing, handedAwayRecently: false, statuses: ["n1": .alive, "n3": .suspect], hint: nil, now: t0)
            == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        #expect(suspect.answered(["n1": .none], ownsNow: false, configuredPeers: peers, now: t0) == .wait(TakeoverSearch.pollInterval))

        // A silent member: not final.
        var silent = search()
        _ = silent.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(silent.answered(["n1": .none], ownsNow: false, configuredPeers: peers, now: t0) == .wait(TakeoverSearch.pollInterval))

        // A tombstone at a member is final.
        var ended = search()
        _ = ended.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0)
        #expect(code(ended.answered(["n1": .ended(sampleStamp)], ownsNow: false, configuredPeers: peers, now: t0)) == .sessionNotFound)
    }

    @Test("a node that may not take sessions over names the owner: from its copy, a kept answer (learned), or a hint of a live owner")
    func mayNotTakeOver() {
        let none = TakeoverSearch.Settings(mayTakeOver: false)
        var s = search(none)
        guard case .fail(let e) = s.next(held: .backup(owner: "n1"), handedAwayRecently: false, statuses: alive, hint: nil, now: t0) else {
            Issue.record("took over"); return
        }
        #expect(e.code == .notOwner && e.owner == "n1")

        var asked = search(none)
        #expect(asked.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: nil, now: t0) == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        guard case .fail(let kept) = asked.answered(["n1": .none, "n3": .kept(sampleStamp)], ownsNow: false, configuredPeers: peers, now: t0) else {
            Issue.record("no referral"); return
        }
        #expect(kept.code == .notOwner && kept.owner == "n3" && asked.learnedOwner == "n3")

        var hinted = search(none)
        guard case .fail(let h) = hinted.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: "n3", now: t0) else {
            Issue.record("hint ignored"); return
        }
        #expect(h.owner == "n3")
        // A hint naming a member no longer alive is not trusted: everyone is asked.
        var stale = search(none)
        #expect(stale.next(held: .nothing, handedAwayRecently: false, statuses: ["n1": .alive, "n3": .suspect], hint: "n3", now: t0)
            == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        // A sticky node ignores hints: it takes sessions over.
        var sticky = search()
        #expect(sticky.next(held: .nothing, handedAwayRecently: false, statuses: alive, hint: "n3", now: t0) == .ask(["n1", "n3"], timeout: .milliseconds(500)))
        #expect(sticky.answered(["n3": .kept(sampleStamp)], ownsNow: false, configuredPeers: peers, now: t0) == .wait(TakeoverSearch.pollInterval))
        #expect(sticky.learnedOwner == nil)
    }

    @Test("within takeoverCooldown the node refers to the owner its copy names while that owner is alive, unless told to ignore the cooldown")
    func cooldown() {
        var s = search()
        #expect(code(s.next(held: .backup(owner: "n1"), handedAwayRecently: true, statuses: alive, hint: nil, now: t0)) == .notOwner)
        // The owner named is suspect: referring the client to it would fail; wait for
        // failover instead. Dead: take it over.
        var suspectOwner = search()
        #expect(suspectOwner.next(held: .backup(owner: "n1"), handedAwayRecently: true, statuses: ["n1": .suspect, "n3": .alive], hint: nil, now: t0)
            == .wait(TakeoverSearch.pollInterval))
        var ignoring = search(.init(ignoringCooldown: true))
        #expect(ignoring.next(held: .backup(owner: "n1"), handedAwayRecently: true, statuses: alive, hint: nil, now: t0)
            == .ask(["n1"], timeout: .milliseconds(500)))
    }

    @Test("a node storing backups only, holding nothing with nobody to ask, is unavailable at once")
    func serverRoleAlone() {
        var s = search(.init(mayTakeOver: false, ownsSessions: false))
        #expect(code(s.next(held: .nothing, handedAwayRecently: false, statuses: ["n1": .dead], hint: nil, now: t0)) == .sessionUnavailable)
    }

    @Test("an owner hint lasts one second, and a full table starts over")
    func ownerHintsExpire() {
        var hints = OwnerHints()
        let id = SessionID(high: 1, low: 2)
        hints.remember(id, owner: "n1", now: t0)
        #expect(hints.owner(of: id, now: t0 + .milliseconds(999)) == "n1")
        #expect(hints.owner(of: id, now: t0 + .seconds(1)) == nil)
        #expect(hints.entries.isEmpty)
        for i in 0..<OwnerHints.limit { hints.remember(SessionID(high: 0, low: UInt64(i)), owner: "n1", now: t0) }
        hints.remember(id, owner: "n2", now: t0)
        #expect(hints.entries.count == 1 && hints.owner(of: id, now: t0) == "n2")
    }

    @Test("search slots: at most limit at once, the refusal names the limit, released slots are reused")
    func searchSlots() {
        var slots = SearchSlots(limit: 2)
        #expect(slots.acquire() == nil && slots.acquire() == nil)
        #expect(slots.acquire() == 2 && slots.inFlight == 2)
        slots.release()
        #expect(slots.acquire() == nil && slots.inFlight == 2)
        var none = SearchSlots(limit: 0)
        #expect(none.acquire() == 0)
        #expect(SearchSlots().limit == 256)
    }
}
