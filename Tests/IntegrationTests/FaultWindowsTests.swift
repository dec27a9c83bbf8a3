import SessionReplicationDrill
import Testing

/// Which new routes the drill's routing check leaves out: those whose node the fault
/// touched between the route being handed out and the next answer.
struct FaultWindowsTests {
    @Test("a route to a node in its fault window, or within the settle time after it is back, is touched; before and after is not")
    func windows() {
        var w = FaultWindows(settle: 1.5)
        w.open("n3", at: 8.2)
        // A route handed out just before the SIGTERM and answered during the drain.
        #expect(w.touched("n3", from: 8.0, to: 8.4))
        // Other nodes, and spans that end before the fault, are not touched.
        #expect(!w.touched("n1", from: 8.0, to: 8.4))
        #expect(!w.touched("n3", from: 7.0, to: 8.1))
        w.close("n3", at: 9.0)
        #expect(w.windows == [FaultWindows.Window(node: "n3", from: 8.2, until: 10.5)])
        // Back but not yet listed by the balancer again: still touched; after that, not.
        #expect(w.touched("n3", from: 10.0, to: 10.2))
        #expect(!w.touched("n3", from: 10.6, to: 11.0))
        // A second open while one is open keeps the first; a close without one does nothing.
        w.open("n1", at: 12)
        w.open("n1", at: 13)
        w.close("n2", at: 14)
        #expect(w.windows.count == 2 && w.windows[1].from == 12 && w.windows[1].until == .infinity)
    }
}
