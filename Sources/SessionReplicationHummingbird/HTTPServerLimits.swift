import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTPTypes
import SessionReplication

/// The node's HTTP server as the configuration's `http:` section asks: idle and request
/// timeouts, a connection cap, and TLS.
///
/// ```swift
/// let app = Application(router: router, server: try DRSHTTPServer.builder(configuration.http),
///                       configuration: DRSHTTPServer.configuration(address: .hostname(host, port: port), settings: configuration.http))
/// ```
public enum DRSHTTPServer {
    /// HTTP/1.1, with TLS when `settings.tls` names PEM files: a connection idle for
    /// `settings.idleTimeout` is closed (Hummingbird's idle handler), and so is one whose
    /// request does not arrive whole within `settings.effectiveRequestTimeout` of the
    /// connection becoming ready for it (`RequestDeadlineHandler`: slow headers, trickled
    /// or endless chunked bodies). Throws when the certificate or key cannot be read or
    /// do not make a TLS context (the error names the file).
    public static func builder(_ settings: HTTPSettings) throws -> HTTPServerBuilder {
        let idle = TimeAmount.nanoseconds(Int64(clamping: settings.idleTimeout.nanosecondsClamped))
        let deadline = TimeAmount.nanoseconds(Int64(clamping: settings.effectiveRequestTimeout.nanosecondsClamped))
        let http1 = HTTPServerBuilder.http1(configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(timeout: deadline)],
            idleTimeout: idle))
        guard let tls = settings.tls else { return http1 }
        return try .tls(http1, tlsConfiguration: tlsConfiguration(tls))
    }

    /// The server's TLS configuration from PEM files; throws `TLSFileError` naming the file
    /// that could not be read.
    public static func tlsConfiguration(_ files: HTTPTLSFiles) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(files.certificate) } catch {
            throw TLSFileError(field: "http.tls.certificate", path: files.certificate, reason: "\(error)")
        }
        guard !chain.isEmpty else { throw TLSFileError(field: "http.tls.certificate", path: files.certificate, reason: "no certificate in it") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: files.key, format: .pem) } catch {
            throw TLSFileError(field: "http.tls.key", path: files.key, reason: "\(error)")
        }
        return .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// The application configuration: `address`, `serverName`, and at most
    /// `settings.maxConnections` connections at once (Hummingbird's
    /// `MaximumAvailableConnections`: beyond it new connections wait in the listen backlog).
    public static func configuration(address: BindAddress, serverName: String?, settings: HTTPSettings, logger: Logger) -> ApplicationConfiguration {
        ApplicationConfiguration(address: address, serverName: serverName,
                                 availableConnectionsDelegate: MaximumAvailableConnections(settings.maxConnections, logger: logger))
    }
}

/// A TLS file of the configuration could not be used.
public struct TLSFileError: Error, CustomStringConvertible, Sendable {
    /// `http.tls.certificate` or `http.tls.key`.
    public var field: String
    /// The file.
    public var path: String
    /// What went wrong.
    public var reason: String
    /// `field: cannot use PATH: REASON`.
    public var description: String { "\(field): cannot use \(path): \(reason)" }
}

/// Closes a connection whose request does not arrive whole within `timeout` of the
/// connection becoming ready for it (opened, or the previous answer sent): a client
/// trickling its headers or its body, or sending an endless chunked body, holds the
/// connection for at most `timeout`. The time a handler takes to answer does not count.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var reading = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            reading = true
            if timer == nil { arm(context) }
        case .end:
            reading = false
            timer?.cancel()
            timer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), !reading, timer == nil { arm(context) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.timer = nil
            context.close(promise: nil)
        }
    }
}
