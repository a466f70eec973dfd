import Foundation
import Yams

/// Turns a Cog project (`cog.yaml` plus a predictor using `Input(...)`) into `lathe.yaml` text
/// with the same inputs, defaults, constraints and output.
public enum CogImport {
    /// The `lathe.yaml` text, and one sentence for each `cog.yaml` key it could not carry (also
    /// written into the text as comments), for the terminal.
    public struct Conversion: Sendable {
        public var text: String
        public var notes: [String]
    }

    /// Reads `cog.yaml` and the predictor in `project` and returns the `lathe.yaml` to write.
    public static func convert(project: URL) throws -> String { try conversion(project: project).text }

    /// Reads `cog.yaml` and the predictor in `project`: what `lathe.yaml` says, and what it drops.
    public static func conversion(project: URL) throws -> Conversion {
        let cogURL = project.appendingPathComponent("cog.yaml")
        guard let data = FileManager.default.contents(atPath: cogURL.path) else {
            throw Diagnostic(nil, "no cog.yaml in \(project.path)", fix: "run --from-cog in the folder of a Cog project")
        }
        let text = String(decoding: data, as: UTF8.self)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch let error as YamlError {
            throw SpecParser.syntaxDiagnostic(error, fileName: "cog.yaml")
        } catch {
            throw Diagnostic(SourceLocation(file: "cog.yaml", line: 1, column: 1), "cannot read cog.yaml: \(error)")
        }
        let root = node?.mapping
        let build = root?["build"]?.mapping
        guard let entryText = (root?["run"] ?? root?["predict"])?.string, let entry = EntryPoint(parsing: entryText) else {
            throw Diagnostic(SourceLocation(file: "cog.yaml", line: 1, column: 1), "cog.yaml has no run: or predict: entry",
                             fix: "add `predict: predict.py:Predictor` to cog.yaml")
        }
        let predict = try function(entry, role: .predict, project: project)
        let train = try root?["train"].map { node -> (EntryPoint, PredictorInspection.Function) in
            guard let text = node.string, let entry = EntryPoint(parsing: text) else {
                throw Diagnostic(SourceLocation(file: "cog.yaml", line: node.mark.map { $0.line } ?? 1, column: node.mark.map { $0.column } ?? 1),
                                 "train: must be file.py:Name, not \(node.string ?? "a list or mapping")", fix: "write for example `train: \"train.py:train\"`")
            }
            return (entry, try function(entry, role: .train, project: project))
        }

        var lines: [String] = ["# Converted from cog.yaml by `lathe init --from-cog`."]
        if let image = root?["image"]?.string {
            let name = image.split(separator: "/").suffix(2).joined(separator: "/")
            if name.contains("/") { lines.append("name: \(name)") }
        }
        var python = build?["python_version"].map { $0.string ?? "" } ?? ModelSpec.defaultPython.description
        python = python.split(separator: ".").prefix(2).joined(separator: ".")
        lines.append("python: \(quote(python))")
        var notes: [String] = []
        if let version = PythonVersion(python), !hasInterpreter(version) {
            notes.append("python_version \(python) is kept, but this machine has no Python \(python): install it (apt-get install python\(python), "
                         + "or uv python install \(python)), or change python: in lathe.yaml to an installed version")
        }
        // What `cog` itself depends on, which Cog images therefore have: added where the code imports it.
        let imports = (try? ImportCheck.imports(project: project, files: ImportCheck.codeFiles(project: project, entries: [entry.file] + (train.map { [$0.0.file] } ?? [])))) ?? []
        if let requirements = build?["python_requirements"]?.string {
            lines.append("requirements: \(quote(requirements))")
            let listed = (try? String(contentsOf: project.appendingPathComponent(requirements), encoding: .utf8))?
                .components(separatedBy: .newlines) ?? []
            for (module, distribution, found) in implicit(imports, project: project, listed: listed) {
                notes.append("\(found.file) imports \(module), which Cog images have because cog depends on it: add \(distribution) to \(requirements)")
            }
        } else {
            var packages = build?["python_packages"]?.sequence?.compactMap(\.string) ?? []
            for (module, distribution, found) in implicit(imports, project: project, listed: packages) {
                packages.append(distribution)
                notes.append("python_packages gains \(distribution): \(found.file) imports \(module), which Cog images have because cog depends on it")
            }
            if !packages.isEmpty { lines.append("python_packages: [" + packages.map(quote).joined(separator: ", ") + "]") }
        }
        let systemPackages = build?["system_packages"]?.sequence?.compactMap(\.string).filter(SpecParser.isDebianPackageName) ?? []
        if !systemPackages.isEmpty { lines.append("system_packages: [" + systemPackages.map(quote).joined(separator: ", ") + "]") }
        lines.append("predict: \(entry)")
        if predict.params.isEmpty {
            lines.append("inputs: {}")
        } else {
            lines.append("inputs:")
        }
        for parameter in predict.params {
            let declaration = try fields(parameter, file: entry.file).joined(separator: ", ")
            lines.append("  \(parameter.name): {\(declaration)}")
        }
        lines.append("output: {" + output(predict.returns).joined(separator: ", ") + "}")
        if let (entry, function) = train {
            lines += ["train:", "  entry: \(quote(entry.description))", function.params.isEmpty ? "  inputs: {}" : "  inputs:"]
            for parameter in function.params {
                lines.append("    \(parameter.name): {\(try fields(parameter, file: entry.file).joined(separator: ", "))}")
            }
        }
        if let node = root?["concurrency"]?.mapping?["max"] {
            guard let maximum = node.int, maximum >= 1 else {
                throw Diagnostic(SourceLocation(file: "cog.yaml", line: node.mark.map { $0.line } ?? 1, column: node.mark.map { $0.column } ?? 1),
                                 "concurrency.max must be a whole number of at least 1, not \(node.string ?? "that")",
                                 fix: "write the most predictions one instance runs at once, e.g. `max: 4`, or remove concurrency:")
            }
            lines.append("concurrency: \(min(maximum, SpecParser.Limits.concurrency))")
        }
        notes += dropped(root: root, build: build)
        if !notes.isEmpty {
            lines.append("")
            lines += notes.map { "# " + $0 }
        }
        return Conversion(text: lines.joined(separator: "\n") + "\n", notes: notes)
    }

    /// The entry point's function (a class's `predict`/`run`, or `train`), or a sentence saying
    /// why `cog.yaml` names nothing Lathe can read.
    static func function(_ entry: EntryPoint, role: EntryRole, project: URL) throws -> PredictorInspection.Function {
        let key = role == .train ? "train" : "predict"
        let here = SourceLocation(file: "cog.yaml", line: 1, column: 1)
        let inspection = try PredictorInspection.inspect(project: project, file: entry.file, symbol: entry.symbol, role: role)
        if inspection.error == "missing_symbol" {
            let defined = inspection.available ?? []
            throw Diagnostic(here, "\(key): names \(entry.symbol), which \(entry.file) does not define"
                                + (defined.isEmpty ? " (it defines no class or function)" : " (it defines \(defined.joined(separator: ", ")))"),
                             fix: "write \(key): \"\(entry.file):\(defined.first ?? (role == .train ? "train" : "Predictor"))\" in cog.yaml")
        }
        if inspection.error == "unreadable" {
            throw Diagnostic(here, "\(key): names \(entry.file), which cannot be read (\(inspection.message ?? "missing"))",
                             fix: "check the file name in cog.yaml's \(key):")
        }
        if let error = inspection.error {
            throw Diagnostic(SourceLocation(file: entry.file, line: inspection.line ?? 1, column: inspection.column ?? 1),
                             "cannot read the \(role == .train ? "training entry point" : "predictor"): \(inspection.message ?? error)")
        }
        guard let function = inspection.predict else {
            throw Diagnostic(SourceLocation(file: entry.file, line: inspection.line ?? 1, column: 1),
                             "\(entry.symbol) has no \(role == .train ? "train()" : "predict() or run()") method")
        }
        return function
    }

    /// Whether `version` can be found here as environments look for it (`pythonX.Y` on PATH,
    /// or an interpreter uv knows).
    static func hasInterpreter(_ version: PythonVersion) -> Bool {
        // Found and able to start (a pyenv shim for a version not selected is neither).
        if let path = try? ChildProcess.onPath("python\(version.majorMinor)"), (try? ChildProcess.run(path, ["-c", "pass"]))?.status == 0 { return true }
        guard let uv = try? ChildProcess.onPath("uv"), let found = try? ChildProcess.run(uv, ["python", "find", "--no-config", version.majorMinor]) else { return false }
        return found.status == 0
    }

    /// The packages `cog` brings that the code imports and `listed` does not provide.
    static func implicit(_ imports: [ImportCheck.Import], project: URL, listed: [String]) -> [(String, String, ImportCheck.Import)] {
        let missing = ImportCheck.unprovided(imports, project: project, requirements: listed)
        return ImportCheck.cogBrings.compactMap { module, distribution in
            missing.first { $0.module == module }.map { (module, distribution, $0) }
        }
    }

    /// One sentence per `cog.yaml` key the conversion does not carry: what it meant and what to
    /// do in Lathe instead.
    static func dropped(root: Node.Mapping?, build: Node.Mapping?) -> [String] {
        var notes: [String] = []
        let carried = ["python_version", "python_packages", "python_requirements"]
        for (key, value) in build ?? Node.Mapping([]) {
            guard let name = key.string, !carried.contains(name) else { continue }
            switch name {
            case "gpu" where value.bool == true:
                notes.append("build.gpu: true is not a lathe.yaml key: give the model a GPU SKU on the registry (PATCH /v1/models/OWNER/NAME with {\"hardware\": \"gpu-…\"}; GET /v1/hardware lists them); `lathe predict` gives it this machine's GPUs")
            case "gpu":
                continue
            case "system_packages":
                // Carried as system_packages: (below); only names apt could never know are noted.
                for bad in value.sequence?.compactMap(\.string).filter({ !SpecParser.isDebianPackageName($0) }) ?? [] {
                    notes.append("build.system_packages entry \"\(bad)\" is not a Debian package name and is not carried")
                }
            case "cuda", "cudnn":
                notes.append("build.\(name) is not carried: Lathe runs on the host's NVIDIA driver and the CUDA libraries the model's Python packages bring (torch wheels include theirs)")
            case "run":
                notes.append("build.run is not carried: Lathe runs no build commands (nothing a model ships runs on the host outside its sandbox); put what they set up into python_packages or the model's setup()")
            default:
                notes.append("build.\(name) is not carried: lathe.yaml has no such setting")
            }
        }
        for (key, _) in root ?? Node.Mapping([]) {
            guard let name = key.string, !["build", "predict", "image", "concurrency", "train"].contains(name) else { continue }
            switch name {
            case "environment":
                notes.append("environment: is not carried: a model's environment variables are not taken from its spec; read settings from inputs or files")
            default:
                notes.append("\(name): is not carried: lathe.yaml has no such setting")
            }
        }
        if let concurrency = root?["concurrency"]?.mapping {
            for (key, _) in concurrency {
                guard let name = key.string, name != "max" else { continue }
                notes.append("concurrency.\(name) is not carried: Lathe's autoscaler decides how many instances run")
            }
        }
        return notes
    }

    /// One parameter as the fields of its `inputs:` entry (`type: integer`, `minimum: 1`, …), values in JSON.
    static func fields(_ parameter: PredictorInspection.Parameter, file: String) throws -> [String] {
        guard let annotation = parameter.annotation, let type = annotation.type else {
            throw Diagnostic(SourceLocation(file: file, line: parameter.line, column: parameter.column),
                             "parameter \"\(parameter.name)\" has annotation \(parameter.annotation?.text ?? "none") that Lathe cannot map",
                             fix: "annotate it with str, int, float, bool, Path, Secret, dict or list[...]")
        }
        var result = ["type: \(type)"]
        if type == "array" { result.append("items: \(annotation.items ?? "string")") }
        let options = parameter.default.input ?? [:]
        if let value = options["description"] { result.append("description: \(json(value))") }
        var choices = options["choices"]
        if choices == nil, let literal = annotation.choices { choices = .array(literal) }
        if let value = choices { result.append("choices: \(json(value))") }
        for (cog, lathe) in [("ge", "minimum"), ("le", "maximum"), ("min_length", "min_length"), ("max_length", "max_length"),
                             ("regex", "pattern"), ("deprecated", "deprecated")] {
            if let value = options[cog] { result.append("\(lathe): \(json(value))") }
        }
        if let value = options["accept"] ?? nil, type == "file" { result.append("accept: \(json(value))") }
        switch parameter.default.literal {
        case .some(.some(.null)), .some(nil): result.append("nullable: true")
        case .some(.some(let value)) where type != "file": result.append("default: \(json(value))")
        default: if annotation.nullable == true { result.append("nullable: true") }
        }
        return result
    }

    private static func output(_ returns: PredictorInspection.TypeInfo?) -> [String] {
        guard let returns, let type = returns.type else { return ["type: object"] }
        var result = ["type: \(type)"]
        if type == "array" || type == "iterator" { result.append("items: \(returns.items ?? "string")") }
        if returns.concatenate == true { result.append("concatenate: true") }
        return result
    }

    /// JSON is valid YAML flow syntax, and keeps strings, numbers and lists exact.
    static func json(_ value: JSONValue) -> String {
        (try? String(decoding: JSON.canonical(value), as: UTF8.self)) ?? "null"
    }

    private static func quote(_ text: String) -> String { json(.string(text)) }
}
