import HTTPTypes
import Hummingbird
import SessionReplicationCore

/// The session cookie `<name>=<id>.<owner>; Path=/; HttpOnly; SameSite=Lax[; Secure]`.
enum SessionCookie {
    /// The `Set-Cookie` value for `id` owned by `owner`.
    static func setCookie(id: SessionID, owner: String, settings: SessionAPI.Settings) -> String {
        "\(settings.cookieName)=\(id.cookieValue(route: owner)); Path=/; HttpOnly; SameSite=Lax" + (settings.secureCookie ? "; Secure" : "")
    }

    /// The route part of the request's session cookie (after the first `.`), if the
    /// request carries a cookie named `name` with one.
    static func route(in request: Request, name: String) -> Substring? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " || $0 == "\t" }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                var value = trimmed[trimmed.index(after: equals)...]
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
                guard let dot = value.firstIndex(of: ".") else { return nil }
                return value[value.index(after: dot)...]
            }
        }
        return nil
    }
}
