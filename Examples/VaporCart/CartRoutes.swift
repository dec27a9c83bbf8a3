import Foundation
import SessionReplication
import Vapor

/// The cart's routes. The cart is one session key, `items`, holding a JSON array of
/// strings: adding an item changes that key alone, so that is all the owner replicates.
struct CartRoutes: Sendable {
    let node: ReplicationNode

    /// What every cart route answers.
    struct CartView: Content {
        var servedBy: String
        var items: [String]
    }

    /// `GET /cluster/members`'s entries.
    struct Member: Content {
        var name: String
        var state: String
    }

    func register(on app: Application) {
        let me = node.nodeName
        app.get("cart") { request in
            CartView(servedBy: me, items: Self.items(request.session))
        }
        app.post("cart", "items", ":item") { request in
            let item = try request.parameters.require("item")
            var items = Self.items(request.session)
            items.append(item)
            request.session.data["items"] = String(decoding: try JSONEncoder().encode(items), as: UTF8.self)
            return CartView(servedBy: me, items: items)
        }
        app.delete("cart") { request in
            request.session.destroy()
            return CartView(servedBy: me, items: [])
        }
        let node = self.node
        app.get("readyz") { _ -> Response in
            Response(status: node.isReady ? .ok : .serviceUnavailable)
        }
        app.get("cluster", "members") { _ in
            node.members().map { Member(name: $0.name, state: $0.state) }
        }
    }

    /// The cart's items; an empty cart when the session holds none.
    static func items(_ session: Session) -> [String] {
        guard let json = session.data["items"] else { return [] }
        return (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
    }
}
