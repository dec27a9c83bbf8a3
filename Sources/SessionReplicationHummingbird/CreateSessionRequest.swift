#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SessionReplicationCore

/// The body of `POST /sessions`: empty, or
/// `{"maxInactiveInterval": seconds, "attributes": {name: base64}}` with both fields
/// optional (`null` counts as absent) and no others.
struct CreateSessionRequest: Sendable {
    /// Initial attributes.
    var attributes: [String: [UInt8]] = [:]
    /// The idle limit, or `nil` for the node's default.
    var maxInactiveInterval: Duration?

    /// Longest idle limit a session may have (what `IdleLimit` allows), in seconds.
    static let maxSeconds = 366.0 * 86_400

    /// Parses `body`. Throws `400 bad-request` naming the problem for malformed JSON, a
    /// non-object, an unknown field, a wrong type, bad base64 or an idle limit outside
    /// 0.001 s to 366 days; `400 invalid-attribute-name` for a bad attribute name.
    init(body: [UInt8]) throws {
        guard body.contains(where: { !Self.isJSONWhitespace($0) }) else { return }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(body))
        } catch let error as APIError {
            throw error
        } catch let error as DecodingError {
            throw APIError.badRequest(Self.describe(error))
        } catch {
            throw APIError.badRequest("the body is not valid JSON")
        }
        if let seconds = wire.maxInactiveInterval {
            guard seconds >= 0.001, seconds <= Self.maxSeconds else {
                throw APIError.badRequest("maxInactiveInterval must be between 0.001 and \(Int(Self.maxSeconds)) seconds")
            }
            maxInactiveInterval = .milliseconds(Int64((seconds * 1000).rounded()))
        }
        for (name, encoded) in wire.attributes ?? [:] {
            guard AttributeName.isValid(name) else { throw APIError.invalidAttributeName }
            guard let value = Base64.decode(encoded) else {
                throw APIError.badRequest("attributes value of \(Self.quoted(name)) is not padded RFC 4648 base64")
            }
            attributes[name] = value
        }
    }

    private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// A short, printable rendering of a client-supplied name for messages.
    static func quoted(_ name: String) -> String {
        let printable = name.unicodeScalars.prefix(64).map { $0.properties.generalCategory == .control ? "?" : String($0) }
        return "\"" + printable.joined() + (name.unicodeScalars.count > 64 ? "...\"" : "\"")
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue)
            switch path.first {
            case nil: return "the body must be a JSON object"
            case "maxInactiveInterval": return "maxInactiveInterval must be a number of seconds"
            case "attributes" where path.count == 1: return "attributes must be an object of name to base64 string"
            case "attributes": return "attributes values must be base64 strings"
            default: return "a field has the wrong type"
            }
        case .dataCorrupted: return "the body is not valid JSON"
        case .keyNotFound: return "a required field is missing"
        @unknown default: return "the body is not valid JSON"
        }
    }

    /// The JSON shape, refusing unknown fields.
    private struct Wire: Decodable {
        var maxInactiveInterval: Double?
        var attributes: [String: String]?

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            let known: Set = ["maxInactiveInterval", "attributes"]
            if let unknown = container.allKeys.first(where: { !known.contains($0.stringValue) }) {
                throw APIError.badRequest("unknown field \(CreateSessionRequest.quoted(unknown.stringValue))")
            }
            maxInactiveInterval = try container.decodeIfPresent(Double.self, forKey: Key(stringValue: "maxInactiveInterval"))
            attributes = try container.decodeIfPresent([String: String].self, forKey: Key(stringValue: "attributes"))
        }
    }
}
