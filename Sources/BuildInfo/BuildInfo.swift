/// What poold and poolctl were built from: the version in the file VERSION and the git commit,
/// embedded at build time by Plugins/BuildInfoPlugin ("-dirty" when tracked files had
/// uncommitted changes, "unknown" outside a git clone).
package enum BuildInfo {
    package static let version = Generated.version
    package static let commit = Generated.commit
    /// `0.1.0 (commit 1a2b3c4d5e6f)`, for `--version` and the `started` log entry.
    package static let description = "\(version) (commit \(commit))"
}
