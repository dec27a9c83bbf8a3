import Foundation

/// A JSON value: a response body, or the OpenAPI document itself once loaded from YAML.
/// Integers and other numbers are told apart as the JSON text wrote them (a number with a
/// fraction or an exponent that does not fit a 64-bit integer is not an integer).
enum JSONInstance: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double, isInteger: Bool)
    case string(String)
    case array([JSONInstance])
    case object([String: JSONInstance])

    /// Parses JSON text; throws `DecodingError` when it is not JSON.
    init(json data: Data) throws {
        self = try JSONDecoder().decode(JSONInstance.self, from: data)
    }

    /// Converts what a YAML loader returns (`String`, `Int`, `Double`, `Bool`, `NSNull`,
    /// arrays and dictionaries with any hashable keys); anything else becomes its
    /// description as a string.
    init(yaml value: Any?) {
        switch value {
        case nil, is NSNull: self = .null
        case let value as Bool: self = .bool(value)
        case let value as Int: self = .number(Double(value), isInteger: true)
        case let value as Double: self = .number(value, isInteger: value.rounded() == value)
        case let value as String: self = .string(value)
        case let value as [Any]: self = .array(value.map { JSONInstance(yaml: $0) })
        case let value as [String: Any]: self = .object(value.mapValues { JSONInstance(yaml: $0) })
        case let value as [AnyHashable: Any]:
            self = .object(Dictionary(uniqueKeysWithValues: value.map { ("\($0.key.base)", JSONInstance(yaml: $0.value)) }))
        case let value?: self = .string("\(value)")
        }
    }

    /// The member `key` of an object; `nil` for a missing key or a non-object.
    subscript(key: String) -> JSONInstance? {
        if case .object(let members) = self { members[key] } else { nil }
    }

    /// The text of a string value.
    var string: String? { if case .string(let text) = self { text } else { nil } }

    /// The members of an object.
    var object: [String: JSONInstance]? { if case .object(let members) = self { members } else { nil } }

    /// The elements of an array.
    var array: [JSONInstance]? { if case .array(let elements) = self { elements } else { nil } }

    /// The JSON Schema type names this value has (`integer` values are `number`s too).
    var typeNames: Set<String> {
        switch self {
        case .null: ["null"]
        case .bool: ["boolean"]
        case .number(_, let isInteger): isInteger ? ["integer", "number"] : ["number"]
        case .string: ["string"]
        case .array: ["array"]
        case .object: ["object"]
        }
    }
}

extension JSONInstance: Decodable {
    init(from decoder: any Decoder) throws {
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let value = try? single.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? single.decode(Int64.self) {
            self = .number(Double(value), isInteger: true)
        } else if let value = try? single.decode(UInt64.self) {
            self = .number(Double(value), isInteger: true)
        } else if let value = try? single.decode(Double.self) {
            self = .number(value, isInteger: false)
        } else if let value = try? single.decode(String.self) {
            self = .string(value)
        } else if let value = try? single.decode([JSONInstance].self) {
            self = .array(value)
        } else {
            self = .object(try single.decode([String: JSONInstance].self))
        }
    }
}

/// Checks JSON values against the schemas of one OpenAPI 3.1 document, for the subset of
/// JSON Schema the document uses: `$ref` (local, `#/...`), `type` (a name or a list of
/// names), `enum`, `required`, `properties`, `additionalProperties` (`false` or a
/// schema), `items`, `minimum`, `pattern`, and `format: date-time` (checked loosely as
/// RFC 3339). Other formats and annotations (`description`, `title`) are ignored;
/// `unsupportedKeywords` lists any other keyword a schema uses, so the checker never
/// silently skips a rule the document states.
struct JSONSchemaChecker {
    /// The whole document, for resolving `$ref`.
    let document: JSONInstance

    /// Keywords `check` enforces.
    static let enforced: Set = ["$ref", "type", "enum", "required", "properties", "additionalProperties", "items", "minimum", "pattern", "format"]
    /// Keywords that state no rule.
    static let annotations: Set = ["description", "title"]

    /// Follows `$ref` until the node is not a reference; `nil` when a reference does not
    /// resolve (or loops).
    func resolve(_ node: JSONInstance) -> JSONInstance? {
        var current = node
        for _ in 0..<32 {
            guard let ref = current["$ref"]?.string else { return current }
            guard ref.hasPrefix("#/") else { return nil }
            var target: JSONInstance? = document
            for part in ref.dropFirst(2).split(separator: "/") {
                let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                target = target?[key]
            }
            guard let found = target else { return nil }
            current = found
        }
        return nil
    }

    /// Every problem of `value` against `schema`, each naming its place (`$.a[0].b`);
    /// empty when the value conforms.
    func check(_ value: JSONInstance, against schema: JSONInstance, at path: String = "$") -> [String] {
        guard let schema = resolve(schema) else { return ["\(path): schema reference does not resolve"] }
        var problems: [String] = []
        if let type = schema["type"] {
            let allowed = Set(type.array?.compactMap(\.string) ?? type.string.map { [$0] } ?? [])
            if allowed.isDisjoint(with: value.typeNames) {
                return ["\(path): expected \(allowed.sorted().joined(separator: " or ")), found \(value.typeNames.sorted().last ?? "?")"]
            }
        }
        if let choices = schema["enum"]?.array, !choices.contains(value) {
            problems.append("\(path): \(Self.show(value)) is not one of \(choices.map(Self.show).joined(separator: ", "))")
        }
        if case .number(let number, _) = value, case .number(let minimum, _)? = schema["minimum"], number < minimum {
            problems.append("\(path): \(number) is below the minimum \(minimum)")
        }
        if case .string(let text) = value {
            if let pattern = schema["pattern"]?.string, !Self.matches(text, pattern) {
                problems.append("\(path): \(Self.show(value)) does not match \(pattern)")
            }
            if schema["format"]?.string == "date-time", !Self.matches(text, #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"#) {
                problems.append("\(path): \(Self.show(value)) is not an RFC 3339 date-time")
            }
        }
        if case .array(let elements) = value, let items = schema["items"] {
            for (index, element) in elements.enumerated() {
                problems += check(element, against: items, at: "\(path)[\(index)]")
            }
        }
        if case .object(let members) = value {
            for name in schema["required"]?.array?.compactMap(\.string) ?? [] where members[name] == nil {
                problems.append("\(path): required property \(name) is missing")
            }
            let properties = schema["properties"]?.object ?? [:]
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                if let property = properties[name] {
                    problems += check(member, against: property, at: "\(path).\(name)")
                } else if let extra = schema["additionalProperties"] {
                    if extra == .bool(false) {
                        problems.append("\(path): property \(name) is not allowed")
                    } else if extra != .bool(true) {
                        problems += check(member, against: extra, at: "\(path).\(name)")
                    }
                }
            }
        }
        return problems
    }

    /// Keywords used by `schema` and the schemas inside it that `check` neither enforces
    /// nor may ignore, as `place: keyword`.
    func unsupportedKeywords(in schema: JSONInstance, at path: String) -> [String] {
        guard let members = schema.object else { return [] }
        if members["$ref"] != nil { return members.count == 1 ? [] : ["\(path): keywords beside $ref"] }
        var out: [String] = []
        for (keyword, value) in members.sorted(by: { $0.key < $1.key }) {
            if !Self.enforced.contains(keyword), !Self.annotations.contains(keyword) { out.append("\(path): \(keyword)") }
            switch keyword {
            case "items": out += unsupportedKeywords(in: value, at: "\(path).items")
            case "additionalProperties": out += unsupportedKeywords(in: value, at: "\(path).additionalProperties")
            case "properties":
                for (name, property) in value.object ?? [:] { out += unsupportedKeywords(in: property, at: "\(path).properties.\(name)") }
            default: break
            }
        }
        return out
    }

    static func matches(_ text: String, _ pattern: String) -> Bool {
        guard let regex = try? Regex(pattern) else { return false }
        return text.contains(regex)
    }

    static func show(_ value: JSONInstance) -> String {
        switch value {
        case .string(let text): "\"\(text.prefix(60))\""
        case .number(let number, let isInteger): isInteger && abs(number) < 9e18 ? String(Int64(number)) : String(number)
        case .bool(let flag): String(flag)
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
