/// `[daemon]`: the control socket and daemon-wide bounds.
public struct DaemonSettings: Sendable, Equatable {
    public static let defaultControlSocket = "/run/poold/control.sock"

    /// Ignored when systemd passes a socket. At most 107 bytes (the AF_UNIX path limit).
    public var controlSocket: String
    /// Permission bits for the socket file, at most 0o777; written `"0660"` in the file.
    public var socketMode: UInt32
    public var socketGroup: String?
    /// How long running jobs may finish after SIGTERM; zero cancels them at once.
    public var shutdownGrace: Duration
    /// Connections at once; one more is answered `overloaded` and closed. At least 1.
    public var maxConnections: Int
    /// Requests in flight per connection before poold stops reading it. At least 1.
    public var maxInflightPerConnection: Int

    public init(
        controlSocket: String = DaemonSettings.defaultControlSocket,
        socketMode: UInt32 = 0o660,
        socketGroup: String? = nil,
        shutdownGrace: Duration = .seconds(30),
        maxConnections: Int = 1024,
        maxInflightPerConnection: Int = 128
    ) {
        self.controlSocket = controlSocket
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.shutdownGrace = shutdownGrace
        self.maxConnections = maxConnections
        self.maxInflightPerConnection = maxInflightPerConnection
    }
}
