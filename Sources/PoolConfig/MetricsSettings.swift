#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `[metrics]`: the Prometheus scrape endpoint over HTTP. Off unless `listen` is set.
///
/// Equality compares the address only: a reload that merely moves the `listen` line does not
/// move the listener.
public struct MetricsSettings: Sendable, Equatable {
    /// Where `/metrics` and `/healthz` are served; nil: no HTTP endpoint.
    public var listen: ListenAddress?
    /// The line of `listen` in the file, for an address that turns out not to be bindable
    /// (in use, not on this machine): that is a config error too, found only when binding.
    public var listenLine: Int?

    public init(listen: ListenAddress? = nil, listenLine: Int? = nil) {
        self.listen = listen
        self.listenLine = listenLine
    }

    public static func == (lhs: MetricsSettings, rhs: MetricsSettings) -> Bool {
        lhs.listen == rhs.listen
    }
}

/// An IP address and a TCP port, written `127.0.0.1:9187` or `[::1]:9187`. Host names are not
/// accepted: resolving one is I/O that a config check should not do, and its answer may change.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address without brackets: `127.0.0.1`, `::1`.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// As written in the config: an IPv6 address in brackets.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Parses `HOST:PORT` (an IPv4 address, or an IPv6 address in brackets, and a port from 1
    /// to 65535); nil if it is not one.
    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        let family: Int32
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            family = AF_INET6
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            family = AF_INET
        }
        guard let canonical = Self.canonical(String(host), family: family),
            !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0 >= "0" && $0 <= "9" }),
            let port = Int(portText), (1...65535).contains(port)
        else { return nil }
        self.init(host: canonical, port: port)
    }

    /// `text` as `inet_ntop` writes it (`::1` for `0::0001`), if it is a numeric address of
    /// `family` (`inet_pton`'s grammar: four decimal parts for IPv4, no zone for IPv6).
    private static func canonical(_ text: String, family: Int32) -> String? {
        guard !text.isEmpty, text.utf8.count < 64 else { return nil }
        var address = [UInt8](repeating: 0, count: 16)
        guard inet_pton(family, text, &address) == 1 else { return nil }
        var out = [CChar](repeating: 0, count: 64)
        guard inet_ntop(family, address, &out, socklen_t(out.count)) != nil else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
