import NIOHTTP1
import PoolCore

/// What the endpoint answers, decided without a socket: from the request's method and path and
/// poold's state, or from what was wrong with the request. Every answer closes the connection.
struct HTTPAnswer: Sendable, Equatable {
    var status: HTTPResponseStatus
    var body: String
    var contentType = "text/plain; charset=utf-8"
    /// For 405: the methods the path takes.
    var allow: String?
    /// HEAD: the headers GET would get, without the body.
    var omitsBody = false

    /// The Prometheus text exposition format, version 0.0.4.
    static let exposition = "text/plain; version=0.0.4; charset=utf-8"

    /// `GET /metrics` (the exposition), `GET /healthz` (200 while poold serves, 503 while it
    /// starts or stops), 405 for any other method on those paths, and 404 for any other path.
    /// A query string is ignored. `metrics` is called only for `/metrics`.
    static func route(method: HTTPMethod, uri: String, state: DaemonLifecycle.State, metrics: () -> String) -> HTTPAnswer {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" || path == "/healthz" else {
            return HTTPAnswer(status: .notFound, body: "not found: this endpoint serves /metrics and /healthz\n")
        }
        guard method == .GET || method == .HEAD else {
            return HTTPAnswer(status: .methodNotAllowed, body: "method not allowed: use GET\n", allow: "GET, HEAD")
        }
        var answer: HTTPAnswer
        if path == "/metrics" {
            answer = HTTPAnswer(status: .ok, body: metrics(), contentType: exposition)
        } else {
            switch state {
            case .ready, .reloading: answer = HTTPAnswer(status: .ok, body: "\(state.rawValue)\n")
            case .starting, .stopping, .stopped: answer = HTTPAnswer(status: .serviceUnavailable, body: "\(state.rawValue)\n")
            }
        }
        answer.omitsBody = method == .HEAD
        return answer
    }

    /// A request that could not be served as sent.
    enum Refusal: Sendable, Equatable {
        /// Not HTTP/1.x, or not well-formed.
        case malformed
        /// The request line and headers exceed the limit.
        case headTooLarge
        /// The whole request did not arrive within the limit (a slow or stalled client).
        case tooSlow
        /// Every connection the endpoint allows is taken.
        case busy
    }

    static func refusing(_ refusal: Refusal) -> HTTPAnswer {
        let limit = HTTPLimits.maxRequestBytes
        let seconds = HTTPLimits.requestTimeout.components.seconds
        switch refusal {
        case .malformed:
            return HTTPAnswer(status: .badRequest, body: "bad request: not a well-formed HTTP/1.1 request\n")
        case .headTooLarge:
            return HTTPAnswer(
                status: .requestHeaderFieldsTooLarge, body: "request headers too large: at most \(limit) bytes\n")
        case .tooSlow:
            return HTTPAnswer(status: .requestTimeout, body: "request timeout: the request must arrive within \(seconds)s\n")
        case .busy:
            return HTTPAnswer(
                status: .serviceUnavailable, body: "busy: \(HTTPLimits.maxConnections) connections open; retry later\n")
        }
    }

    /// The head to send: the body's length (even for HEAD), and `Connection: close`.
    var head: HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        if let allow { headers.add(name: "Allow", value: allow) }
        return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    }
}

/// What one HTTP connection may cost poold. Fixed: the endpoint serves a scraper or two and a
/// health check, and a client that needs more is misbehaving.
enum HTTPLimits {
    /// Connections open at once; one more is answered 503 and closed.
    static let maxConnections = 8
    /// What a connection may send: the request line and headers (any body is not read).
    static let maxRequestBytes = 8192
    /// From accept until the whole request has arrived: a client sending slowly is cut off.
    static let requestTimeout: Duration = .seconds(5)
    /// For the socket to take the answer: a client that does not read is cut off.
    static let writeTimeout: Duration = .seconds(10)
}
