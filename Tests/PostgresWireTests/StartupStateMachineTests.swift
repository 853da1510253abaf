import NIOCore
import Testing

@testable import PostgresWire

/// Startup as a machine: what goes out for each request, and what a server may not do.
@Suite
struct StartupStateMachineTests {
    static func configuration(password: String? = "pencil", allowed: Set<WireConnection.AuthMethod>? = nil) -> WireConnection.Configuration
    {
        var configuration = WireConnection.Configuration(
            address: .tcp(host: "db", port: 5432), user: "u", database: "d", password: password)
        configuration.allowedAuth = allowed
        configuration.requireAuthText = allowed.map { $0.map(\.rawValue).sorted().joined(separator: ",") } ?? ""
        return configuration
    }

    @Test func md5GoesOutAndReadyComesWithKeyAndParameters() {
        var machine = StartupStateMachine(Self.configuration())
        guard case .write(var buffer) = machine.received(.authentication(.md5Password(salt: [1, 2, 3, 4]))) else {
            Issue.record("no password message")
            return
        }
        #expect(buffer.readInteger(as: UInt8.self) == UInt8(ascii: "p"))
        for message: BackendMessage in [
            .authentication(.ok), .parameterStatus(name: "TimeZone", value: "UTC"), .backendKeyData(.init(processID: 7, secretKey: 9)),
        ] {
            guard case .none = machine.received(message) else {
                Issue.record("\(message) did more than it should")
                return
            }
        }
        guard case .ready(let key, let parameters) = machine.received(.readyForQuery(.idle)) else {
            Issue.record("not ready")
            return
        }
        #expect(key == .init(processID: 7, secretKey: 9))
        #expect(parameters == ["TimeZone": "UTC"])
    }

    @Test func aScramExchangeEndedWithoutTheServersProofIsRefused() {
        var machine = StartupStateMachine(Self.configuration())
        guard case .write = machine.received(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"]))) else {
            Issue.record("no SASLInitialResponse")
            return
        }
        guard case .fail = machine.received(.authentication(.ok)) else {
            Issue.record("AuthenticationOk without SASLFinal was accepted")
            return
        }
    }

    @Test func requireAuthRefusesBeforeAnyPasswordGoesOut() {
        var cleartext = StartupStateMachine(Self.configuration(allowed: [.scramSHA256]))
        guard case .fail(let error) = cleartext.received(.authentication(.cleartextPassword)) else {
            Issue.record("cleartext was answered")
            return
        }
        #expect(error.message.contains("asked for the password in cleartext"))
        var trust = StartupStateMachine(Self.configuration(allowed: [.scramSHA256]))
        guard case .fail = trust.received(.authentication(.ok)) else {
            Issue.record("trust was accepted")
            return
        }
        var allowed = StartupStateMachine(Self.configuration(allowed: [.none]))
        guard case .none = allowed.received(.authentication(.ok)) else {
            Issue.record("trust was refused although none is allowed")
            return
        }
    }

    @Test func aPasswordRequestWithoutAPasswordAndAnUnknownMethodFail() {
        var noPassword = StartupStateMachine(Self.configuration(password: nil))
        guard case .fail = noPassword.received(.authentication(.cleartextPassword)) else {
            Issue.record("answered without a password")
            return
        }
        var gss = StartupStateMachine(Self.configuration())
        guard case .fail(let error) = gss.received(.authentication(.unsupported(code: 7))) else {
            Issue.record("GSSAPI was accepted")
            return
        }
        #expect(error.message.contains("does not speak"))
    }
}
