import NIOHTTP1
import PoolCore
import Testing

@testable import MetricsHTTP

/// What the metrics endpoint answers, without a socket: routes, methods, poold's state, refusals.
struct HTTPAnswerTests {
    @Test(arguments: DaemonLifecycle.State.allCases)
    func healthzFollowsTheLifecycle(state: DaemonLifecycle.State) {
        let answer = HTTPAnswer.route(method: .GET, uri: "/healthz", state: state) {
            Issue.record("healthz does not render the metrics")
            return ""
        }
        let serving = state == .ready || state == .reloading
        #expect(answer.status == (serving ? .ok : .serviceUnavailable))
        #expect(answer.body == "\(state.rawValue)\n")
    }

    @Test func metricsServesTheExpositionAndHeadOmitsTheBody() {
        let get = HTTPAnswer.route(method: .GET, uri: "/metrics?x=1", state: .stopping) { "poold_up 1\n" }
        #expect(get.status == .ok)
        #expect(get.body == "poold_up 1\n")
        #expect(get.head.headers["Content-Type"] == ["text/plain; version=0.0.4; charset=utf-8"])

        let head = HTTPAnswer.route(method: .HEAD, uri: "/metrics", state: .ready) { "poold_up 1\n" }
        #expect(head.head.headers["Content-Length"] == ["11"], "HEAD says how long GET's body is")
        #expect(head.head.headers["Connection"] == ["close"])
        #expect(head.omitsBody && head.body == "poold_up 1\n", "HEAD's answer keeps the body for its length, and omits it")
    }

    @Test(arguments: [HTTPMethod.POST, .PUT, .DELETE, .PATCH, .OPTIONS, .CONNECT, .RAW(value: "BREW")])
    func otherMethodsAre405WithAllow(method: HTTPMethod) {
        for path in ["/metrics", "/healthz"] {
            let answer = HTTPAnswer.route(method: method, uri: path, state: .ready) { "" }
            #expect(answer.status == .methodNotAllowed)
            #expect(answer.head.headers["Allow"] == ["GET, HEAD"])
        }
    }

    @Test(arguments: ["/", "", "*", "/metrics/", "/Metrics", "/healthz/", "metrics", "/metrics#x", "http://host/metrics"])
    func otherPathsAre404(uri: String) {
        #expect(HTTPAnswer.route(method: .GET, uri: uri, state: .ready) { "" }.status == .notFound)
        #expect(HTTPAnswer.route(method: .POST, uri: uri, state: .ready) { "" }.status == .notFound)
    }

    @Test func refusalsSayWhatWasWrong() {
        #expect(HTTPAnswer.refusing(.malformed).status == .badRequest)
        #expect(HTTPAnswer.refusing(.headTooLarge).status == .requestHeaderFieldsTooLarge)
        #expect(HTTPAnswer.refusing(.headTooLarge).body.contains("8192 bytes"))
        #expect(HTTPAnswer.refusing(.tooSlow).status == .requestTimeout)
        #expect(HTTPAnswer.refusing(.busy).status == .serviceUnavailable)
        #expect(HTTPAnswer.refusing(.busy).head.headers["Connection"] == ["close"])
    }
}
