/// `[access]`: who may do what. Each entry is a user name, `@group`, or `*` (anyone).
/// A list missing from the file is empty; root is always an operator regardless.
public struct AccessSettings: Sendable, Equatable {
    public var operators: [String]
    public var submitters: [String]
    public var observers: [String]

    public init(operators: [String] = [], submitters: [String] = [], observers: [String] = []) {
        self.operators = operators
        self.submitters = submitters
        self.observers = observers
    }
}
