import Foundation
import PackagePlugin

/// Embeds the version (the file VERSION at the package's root) and the git commit it was built
/// from, with "-dirty" when tracked files have uncommitted changes, into the BuildInfo target.
/// A prebuild command, so it runs at every build; it rewrites the file only when its content
/// changes, so an unchanged tree recompiles nothing. Without git or outside a clone (a source
/// tarball) the commit reads "unknown".
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        let script = #"""
            root=$1 out=$2
            mkdir -p "$out"
            version=$(head -n 1 "$root/VERSION" 2>/dev/null | tr -cd '0-9A-Za-z.+~-')
            [ -n "$version" ] || version=0.0.0
            commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null) || commit=unknown
            if [ "$commit" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
              commit="$commit-dirty"
            fi
            printf '// Generated at build time by Plugins/BuildInfoPlugin.\nenum Generated {\n    static let version = "%s"\n    static let commit = "%s"\n}\n' \
              "$version" "$commit" > "$out/Generated.swift.new"
            if cmp -s "$out/Generated.swift.new" "$out/Generated.swift"; then rm -f "$out/Generated.swift.new"
            else mv "$out/Generated.swift.new" "$out/Generated.swift"; fi
            """#
        return [
            .prebuildCommand(
                displayName: "Embedding the version and git commit",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: output)
        ]
    }
}
