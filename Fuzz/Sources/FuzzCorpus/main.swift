import Foundation
import SessionReplicationCore

// Writes the seed corpus of the fuzz targets: valid encodings of every message kind, whole
// frames around them, membership messages, and configuration files (those of
// cluster-configs/ are copied by the Makefile). `fuzz-corpus DIR` writes DIR/<target>/.

let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "corpus"
let id = SessionID(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210)
let owner = NodeID(0xA1B2_C3D4_E5F6_0718)
let stamp = Stamp(epoch: Epoch(counter: 3, owner: owner), version: 42)

func state(_ attributes: [String: [UInt8]], replicas: [String] = ["n2", "node-3"]) -> SessionState {
    SessionState(id: id, stamp: stamp, attributes: attributes, createdAt: WallTime(milliseconds: 1_700_000_000_000),
                 lastAccessedAt: WallTime(milliseconds: 1_700_000_123_456), maxInactiveInterval: .seconds(1800), replicaSet: replicas)
}

let full = state(["user": Array("alice".utf8), "cart": [0, 1, 2, 255], "empty": []])
let messages: [ReplicationMessage] = [
    .full(full),
    .full(state([:], replicas: [])),
    .delta(SessionDelta(id: id, epoch: stamp.epoch, baseVersion: 40, version: 42, lastAccessedAt: WallTime(milliseconds: 5),
                        maxInactiveInterval: .seconds(90), replicaSet: ["n2"], updated: ["cart": [9, 9]], removed: ["tmp"])),
    .invalidate(Invalidation(id: id, stamp: stamp, reason: .expired)),
    .touch(Touch(id: id, stamp: stamp, lastAccessedAt: WallTime(milliseconds: 99))),
    .receipt(Receipt(lane: 1, through: 9, received: [11...12, 15...15], refused: [3, 7])),
    .resync(ResyncRequest(lane: 2, entries: [.init(sequence: 5, id: id)])),
    .prepare(PrepareRequest(oldOwner: "n1", entries: [.init(id: id, stamp: stamp)])),
    .promise(PromiseReply(oldOwner: "n1", sinceGrantMs: 250, entries: [.init(id: id, fresher: full, ownedByHolder: true),
                                                                      .init(id: SessionID(high: 1, low: 2), fresher: nil)])),
    .handover(HandoverRequest(requestID: 7, id: id)),
    .handoverReply(HandoverReply(requestID: 7, id: id, answer: .transferred(full))),
    .handoverReply(HandoverReply(requestID: 8, id: id, answer: .backup(stamp, owner: "n3"))),
    .handoverReply(HandoverReply(requestID: 9, id: id, answer: .ended(stamp))),
    .handoverReply(HandoverReply(requestID: 9, id: id, answer: .kept(stamp))),
    .handoverReply(HandoverReply(requestID: 9, id: id, answer: .none)),
    .digest(DigestRequest(round: 1, lanes: 4, lane: 1, buckets: Array(repeating: 0xABCD, count: DigestRequest.bucketCount))),
    .digestReply(DigestReply(round: 1, lane: 1, buckets: [3, 900], held: [.init(id: id, stamp: stamp)])),
    .release(ReleaseRequest(entries: [.init(id: id, stamp: stamp)])),
    .nominate(PrepareRequest(oldOwner: "n1", oldOwnerID: owner, entries: [.init(id: id, stamp: stamp)])),
]

let update = MemberUpdate(status: .alive, name: "n2", id: NodeID(99), incarnation: 4, from: "n1")
let membership: [MembershipMessage] = [
    .ping(sequence: 1, target: NodeID(5), updates: [update]),
    .ack(sequence: 1, updates: []),
    .pingRequest(sequence: 2, target: "n3", targetID: NodeID(6), updates: [update, update]),
    .nack(sequence: 2, updates: [update]),
    .sync(members: [update], reply: true),
    .leaseRequest(sequence: 3),
    .leaseGrant(sequence: 3),
]

func write(_ target: String, _ name: String, _ bytes: [UInt8]) {
    let dir = "\(root)/\(target)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(bytes))
}

for (i, m) in messages.enumerated() { write("message", "seed-\(i)", MessageCodec.encode(m)) }
for (i, m) in membership.enumerated() { write("membership", "seed-\(i)", MembershipCodec.encode(m)) }

func frame(data: [ReplicationMessage], control: [ReplicationMessage], namespace: UInt16 = 0) -> [UInt8] {
    let body = FrameBody.encode(data: data.map(MessageCodec.encode), control: control.map(MessageCodec.encode))
    let header = FrameHeader(flags: [], senderName: "n1", clusterTag: 0xC1C2_C3C4_C5C6_C7C8, sender: owner, keyFingerprint: 0,
                             counter: 77, namespace: namespace, lane: 3, firstSequence: 1_000, lowWatermark: 990, bodyLength: UInt32(body.count))
    var w = ByteWriter()
    header.encode(into: &w)
    w.writeRaw(body)
    return w.bytes
}
let data = messages.filter(\.isSequenced), control = messages.filter { !$0.isSequenced }
for (i, m) in data.enumerated() { write("frame", "data-\(i)", frame(data: [m], control: [])) }
for (i, m) in control.enumerated() { write("frame", "control-\(i)", frame(data: [], control: [m])) }
write("frame", "mixed", frame(data: data, control: control))
write("frame", "empty", frame(data: [], control: []))
for (i, m) in data.enumerated() {
    write("frame", "body-\(i)", FrameBody.encode(data: [MessageCodec.encode(m)], control: control.prefix(2).map(MessageCodec.encode)))
}
print("corpus written to \(root)/{message,membership,frame}")
