import NIOCore

/// The entry point of `FuzzPostgresMessages` (Fuzz/) and of its corpus replay in `make test`:
/// arbitrary bytes as a server's stream, through the framing, the message decoder, the query
/// and pipeline state machines and the SCRAM client. Any input must end in a message, a `WireError` or a
/// state machine's answer; a crash, a trap or a sanitizer report is a bug.
public enum WireFuzzing {
    /// What the bytes came to, for the corpus replay to check.
    public struct Outcome: Sendable, Equatable {
        /// Messages decoded.
        public var messages = 0
        /// Queries the state machine answered (a ReadyForQuery ending one).
        public var answered = 0
        /// The stream broke the protocol: the framing, a message, or the state machine said so.
        public var protocolError = false
    }

    @discardableResult
    public static func run(_ input: UnsafeRawBufferPointer) -> Outcome {
        var outcome = Outcome()
        guard let first = input.first else { return outcome }
        // The first byte picks where the stream is split in two reads, as TCP may split it.
        let bytes = input.dropFirst()
        let split = bytes.isEmpty ? 0 : Int(first) % (bytes.count + 1)
        var decoder = BackendMessageDecoder(maxMessageLength: 1 << 16)
        var machine = QueryStateMachine(rowLimit: Int32(first % 4))
        // The same stream as a pipeline's answer, beside it (it does not change the outcome).
        let statements = 1 + Int(first % 3)
        var pipeline = PipelineStateMachine(count: statements)
        var buffer = ByteBuffer()
        for part in [bytes.prefix(split), bytes.dropFirst(split)] {
            buffer.writeBytes(part)
            while true {
                let message: BackendMessage?
                do {
                    message = try decoder.decode(buffer: &buffer)
                } catch {
                    precondition(error is WireError, "the decoder threw \(error)")
                    outcome.protocolError = true
                    return outcome
                }
                guard let message else { break }
                outcome.messages += 1
                feed(message, to: &machine, &outcome)
                feed(message, to: &pipeline, statements: statements)
            }
        }
        return outcome
    }

    /// A pipeline answers at most once per ReadyForQuery, and hands out rows only of the
    /// statements it has.
    private static func feed(_ message: BackendMessage, to machine: inout PipelineStateMachine, statements: Int) {
        let wasDone = machine.isDone
        switch machine.received(message) {
        case .fail:
            machine = PipelineStateMachine(count: statements)
        case .done(let outcome, _):
            precondition(!wasDone, "a pipeline answered twice")
            if case .success(let tags) = outcome { precondition(tags.count == statements, "tags for \(tags.count) of \(statements)") }
            if case .failure(let failure) = outcome { precondition(failure.index <= statements, "a failure past the commit") }
            machine = PipelineStateMachine(count: statements)
        case .row(let index, _):
            precondition(index < statements, "a row of statement \(index) of \(statements)")
        case .write(let bytes):
            precondition(bytes.readableBytes > 0)
        case .none, .notice, .notification, .parameterChanged:
            break
        }
    }

    private static func feed(_ message: BackendMessage, to machine: inout QueryStateMachine, _ outcome: inout Outcome) {
        if case .authentication(let request) = message {
            var scram = SCRAMClient(password: "pencil", nonce: "fuzz")
            switch request {
            case .saslContinue(let data):
                if let final = try? scram.clientFinal(serverFirst: data) { precondition(!final.isEmpty) }
            case .saslFinal(let data):
                _ = try? scram.verify(serverFinal: data)
            default:
                break
            }
        }
        let wasDone = machine.isDone
        switch machine.received(message) {
        case .fail:
            outcome.protocolError = true
            machine = QueryStateMachine()  // the connection would close; a new one starts
        case .done:
            precondition(!wasDone, "a query answered twice")
            outcome.answered += 1
            machine = QueryStateMachine()
        case .write(let bytes):
            precondition(bytes.readableBytes > 0)
        case .none, .notice, .notification, .parameterChanged, .row:
            break
        }
    }
}
