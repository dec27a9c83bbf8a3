import NIOCore
import SessionReplicationCore

/// Splits a TCP byte stream into frames on a 4-byte little-endian length prefix, refusing
/// any length above `maxFrameBytes` by closing the connection. (NIOExtras'
/// `LengthFieldBasedFrameDecoder` has no upper bound, so a hostile prefix could make it
/// buffer gigabytes.)
struct BoundedFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxFrameBytes: Int
    let onOversized: @Sendable () -> Void

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= maxFrameBytes else {
            onOversized()
            throw FrameRejection.oversized
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Receives frames from a TCP connection and hands them to the node.
final class StreamFrameHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let receiver: FrameReceiver

    init(receiver: FrameReceiver) { self.receiver = receiver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receiver.receive(unwrapInboundIn(data), datagram: false)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Receives datagrams and hands them to the node.
final class DatagramFrameHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let receiver: FrameReceiver

    init(receiver: FrameReceiver) { self.receiver = receiver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receiver.receive(unwrapInboundIn(data).data, datagram: true)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP refusals on the shared socket surface here; the retry logic counts them.
    }
}

/// Where decoded frames go.
protocol FrameReceiver: AnyObject, Sendable {
    func receive(_ buffer: ByteBuffer, datagram: Bool)
}
