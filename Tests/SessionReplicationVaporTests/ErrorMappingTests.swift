import SessionReplicationCore
import SessionReplicationVapor
import Testing
import Vapor

@Suite("Cluster errors become Vapor answers")
struct ErrorMappingTests {
    @Test("errors a client should retry answer 503 with Retry-After, naming the owner when known",
          arguments: [SessionError.Code.sessionUnavailable, .overloaded, .shuttingDown, .fenced, .noQuorum,
                      .insufficientReplicas, .capacity, .notOwner])
    func retryable(_ code: SessionError.Code) {
        let abort = DRSSessionDriver.abort(for: SessionError(code, "m", owner: "n3"), retryAfter: 2)
        #expect(abort.status == .serviceUnavailable)
        #expect(abort.headers.first(name: .retryAfter) == "2")
        #expect(abort.headers.first(name: "X-DRS-Owner") == "n3")
        #expect(abort.identifier == code.description)
    }

    @Test("sync-timeout answers 504; the application's own mistakes answer 500")
    func others() {
        #expect(DRSSessionDriver.abort(for: SessionError(.syncTimeout, "m")).status == .gatewayTimeout)
        for code in [SessionError.Code.invalidAttributeName, .payloadTooLarge, .badRequest, .preconditionFailed, .sessionNotFound] {
            let abort = DRSSessionDriver.abort(for: SessionError(code, "m"))
            #expect(abort.status == .internalServerError, "\(code)")
            #expect(abort.headers.first(name: .retryAfter) == nil)
        }
    }
}
