import NIOCore
import SessionReplicationCore

/// A frame that opened and decoded.
package enum DecodedFrame {
    /// Replication data and control messages.
    case replication(FrameHeader, FrameBody.Decoded)
    /// One membership message.
    case membership(FrameHeader, MembershipMessage)

    package var header: FrameHeader {
        switch self {
        case .replication(let h, _), .membership(let h, _): return h
        }
    }
}

/// Builds and parses frames (replication and membership): header, body, seal. TCP
/// frames carry a 4-byte little-endian length prefix; datagrams do not.
package struct FrameCodec: Sendable {
    let sealer: FrameSealer
    let selfName: String
    let limits: WireLimits

    /// A codec sealing with `sealer` (opening what it can open), naming this node
    /// `selfName` in the headers it writes, refusing frames beyond `limits`.
    package init(sealer: FrameSealer, selfName: String, limits: WireLimits) {
        self.sealer = sealer
        self.selfName = selfName
        self.limits = limits
    }

    /// Encodes one frame into `buffer`.
    package func encode(namespace: UInt16 = FrameHeader.replicationNamespace, lane: UInt16, firstSequence: UInt64,
                lowWatermark: UInt64, body: [UInt8], datagram: Bool, sender: NodeID? = nil, into buffer: inout ByteBuffer) {
        let counter = sealer.nextCounter()
        let sender = sender ?? sealer.selfID
        var flags: FrameHeader.Flags = datagram ? [.datagram] : []
        if sealer.sealing { flags.insert(.sealed) }
        let bodyLength = body.count + (sealer.sealing ? 16 : 0)
        let header = FrameHeader(flags: flags, senderName: selfName, clusterTag: sealer.clusterTag, sender: sender,
                                 keyFingerprint: sealer.currentFingerprint, counter: counter, namespace: namespace, lane: lane,
                                 firstSequence: firstSequence, lowWatermark: lowWatermark, bodyLength: UInt32(bodyLength))
        var w = ByteWriter(capacity: header.encodedSize)
        header.encode(into: &w)
        buffer.reserveCapacity(minimumWritableBytes: 4 + w.bytes.count + bodyLength)
        if !datagram { buffer.writeInteger(UInt32(w.bytes.count + bodyLength), endianness: .little) }
        buffer.writeBytes(w.bytes)
        if sealer.sealing {
            sealer.seal(body: body, headerBytes: w.bytes, counter: counter, sender: sender, name: selfName, into: &buffer)
        } else {
            buffer.writeBytes(body)
        }
    }

    /// Decodes one frame (without length prefix). Checks cluster, seal and body; replay
    /// is checked by the caller, which holds the per-sender windows.
    package func decode(_ buffer: ByteBuffer, datagram: Bool) -> Result<DecodedFrame, FrameRejection> {
        buffer.withUnsafeReadableBytes { raw -> Result<DecodedFrame, FrameRejection> in
            var r = ByteReader(raw)
            let header: FrameHeader
            do {
                header = try FrameHeader.decode(&r, maxBodyBytes: limits.maxFrameBytes)
            } catch let error as DecodeError {
                if case .tooLarge = error { return .failure(.oversized) }
                return .failure(.malformed)
            } catch {
                return .failure(.malformed)
            }
            guard header.clusterTag == sealer.clusterTag else { return .failure(.wrongCluster) }
            guard header.flags.contains(.datagram) == datagram else { return .failure(.malformed) }
            guard header.senderName != selfName, header.sender != sealer.selfID else { return .failure(.selfSent) }
            let headerBytes = UnsafeRawBufferPointer(rebasing: raw[0..<r.offset])
            let bodyBytes = UnsafeRawBufferPointer(rebasing: raw[r.offset...])
            let membership = header.namespace == FrameHeader.membershipNamespace
            func parse(_ p: UnsafeRawBufferPointer) -> Result<DecodedFrame, DecodeError> {
                Result { () throws(DecodeError) in
                    membership ? .membership(header, try MembershipCodec.decode(p)) : .replication(header, try FrameBody.decodeEach(p, limits: limits))
                }
            }
            let decoded: Result<DecodedFrame, DecodeError>
            if sealer.sealing {
                guard header.flags.contains(.sealed) else { return .failure(.sealMismatch) }
                guard let plain = sealer.open(body: bodyBytes, header: header, headerBytes: headerBytes) else { return .failure(.badSeal) }
                decoded = plain.withUnsafeBytes { p in parse(p) }
            } else {
                guard !header.flags.contains(.sealed) else { return .failure(.sealMismatch) }
                decoded = parse(bodyBytes)
            }
            switch decoded {
            case .success(let frame): return .success(frame)
            case .failure(.tooLarge): return .failure(.oversized)
            case .failure: return .failure(.malformed)
            }
        }
    }
}
