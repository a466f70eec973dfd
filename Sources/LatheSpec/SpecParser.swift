import Foundation
import Yams

/// Reads `lathe.yaml` into a ``ModelSpec``, collecting every mistake with its line and column.
public struct SpecParser {
    /// The name used for the file in diagnostics, usually `lathe.yaml`.
    public var fileName: String
    private var problems: [Diagnostic] = []

    public static let rootKeys = [
        "name", "description", "license", "python", "python_packages", "system_packages", "requirements", "predict",
        "safety_checker", "train", "inputs", "output", "weights", "concurrency", "timeout", "network",
    ]
    public static let trainKeys = ["entry", "inputs"]
    public static let inputKeys = [
        "type", "description", "default", "minimum", "maximum", "min_length", "max_length", "pattern",
        "choices", "accept", "deprecated", "nullable", "items",
    ]
    public static let outputKeys = ["type", "description", "items", "properties", "nullable", "concatenate"]
    public static let weightsKeys = ["path", "sha256"]

    public init(fileName: String = "lathe.yaml") {
        self.fileName = fileName
    }

    /// Parses a whole spec; throws ``Diagnostics`` listing every problem found.
    public static func parse(_ text: String, fileName: String = "lathe.yaml") throws -> ModelSpec {
        var parser = SpecParser(fileName: fileName)
        let spec = parser.run(text)
        guard let spec, parser.problems.isEmpty else { throw Diagnostics(parser.problems) }
        return spec
    }

    /// Checks a spec that arrived already decoded (a pushed config's `spec`) with exactly the
    /// checks `lathe validate` applies to `lathe.yaml`: it is written back into the document's
    /// shape (``ModelSpec/document``) and parsed again, so no field skips the parser. Throws
    /// ``Diagnostics`` whose locations name `fileName` (there are no lines to point at).
    public static func check(_ spec: ModelSpec, fileName: String = "config spec") throws -> ModelSpec {
        var parser = SpecParser(fileName: fileName)
        let parsed = parser.run(root: spec.document)
        guard let parsed, parser.problems.isEmpty else { throw Diagnostics(parser.problems) }
        return parsed
    }

    /// Reads and parses `lathe.yaml` in a project folder.
    public static func load(project: URL) throws -> ModelSpec {
        let url = project.appendingPathComponent("lathe.yaml")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Diagnostics([Diagnostic(nil, "no lathe.yaml in \(project.path)",
                                          fix: "run `lathe init` there, or pass the folder that holds lathe.yaml")])
        }
        return try parse(String(decoding: data, as: UTF8.self))
    }

    // MARK: - Document

    private mutating func run(_ text: String) -> ModelSpec? {
        guard text.utf8.count <= Limits.documentBytes else {
            problems.append(Diagnostic(SourceLocation(file: fileName, line: 1, column: 1),
                                       "\(fileName) is \(text.utf8.count) bytes, more than \(Limits.documentBytes >> 10) KiB",
                                       fix: "keep the spec short: long text belongs in README.md, large data in weights:"))
            return nil
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            problems.append(Self.syntaxDiagnostic(error, fileName: fileName))
            return nil
        } catch {
            problems.append(Diagnostic(SourceLocation(file: fileName, line: 1, column: 1), "cannot read YAML: \(error)"))
            return nil
        }
        return run(root: root)
    }

    private mutating func run(root: Node?) -> ModelSpec? {
        // Aliases are shared, not copied, by the composer, but everything below walks the tree
        // as if expanded: a chain of aliases to aliases would be walked exponentially.
        var budget = Limits.expandedValues
        if let root, !Self.fits(root, budget: &budget) {
            problems.append(Diagnostic(location(root), "\(fileName) expands to more than \(Limits.expandedValues) values (YAML aliases that refer to aliases?)",
                                       fix: "write the values out instead of repeating them through &anchors and *aliases"))
            return nil
        }
        guard let root, let mapping = root.mapping else {
            problems.append(Diagnostic(location(root), "lathe.yaml must be a mapping of keys such as predict:, inputs: and output:",
                                       fix: "start from `lathe init`"))
            return nil
        }
        checkKeys(mapping, allowed: Self.rootKeys, context: "at the top level")

        guard let predictNode = mapping["predict"] else {
            problems.append(Diagnostic(location(root), "missing predict:", fix: "add `predict: predict.py:Predictor`"))
            return nil
        }
        guard let predictText = scalarString(predictNode, what: "predict"),
              let predict = EntryPoint(parsing: predictText) else {
            problems.append(Diagnostic(location(predictNode), "predict: must be file.py:Name",
                                       fix: "write for example `predict: predict.py:Predictor`"))
            return nil
        }
        guard Self.projectPath(predict.file) == predict.file else {
            problems.append(Diagnostic(location(predictNode), "predict: names \(Self.clip(predict.file)), which is not a plain path inside the project",
                                       fix: "write a path relative to lathe.yaml, e.g. `predict: predict.py:Predictor`"))
            return nil
        }
        var spec = ModelSpec(predict: predict)
        spec.predictLocation = location(predictNode)

        if let node = mapping["name"], let value = scalarString(node, what: "name") {
            if value.utf8.count > 200 || value.range(of: #"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$"#, options: .regularExpression) == nil {
                problems.append(Diagnostic(location(node), "name \"\(Self.clip(value))\" is not owner/name",
                                           fix: "use lowercase letters, digits, '-', '_' and '.', e.g. `name: acme/sentiment`"))
            } else {
                spec.name = value
            }
        }
        spec.description = mapping["description"].flatMap { scalarString($0, what: "description") }
        spec.license = mapping["license"].flatMap { scalarString($0, what: "license") }
        if let node = mapping["python"], let value = scalarString(node, what: "python") {
            if let version = PythonVersion(value) {
                spec.python = version
            } else {
                problems.append(Diagnostic(location(node), "python \"\(Self.clip(value))\" is not a Python 3 version",
                                           fix: "write it quoted, e.g. `python: \"3.11\"`"))
            }
        }
        if let node = mapping["python_packages"] {
            spec.pythonPackages = stringList(node, what: "python_packages")
        }
        if let node = mapping["system_packages"] {
            let names = stringList(node, what: "system_packages")
            for name in names where !Self.isDebianPackageName(name) {
                problems.append(Diagnostic(location(node), "system_packages: \"\(Self.clip(name))\" is not a Debian package name",
                                           fix: "write package names as apt knows them, e.g. `system_packages: [ffmpeg, libsndfile1]`"))
            }
            spec.systemPackages = names
        }
        if let node = mapping["requirements"] {
            spec.requirements = scalarString(node, what: "requirements")
            if let path = spec.requirements, Self.projectPath(path) == nil {
                problems.append(Diagnostic(location(node), "requirements \"\(Self.clip(path))\" is outside the project",
                                           fix: "use a path relative to lathe.yaml, e.g. `requirements: requirements.txt`"))
            }
            if mapping["python_packages"] != nil {
                problems.append(Diagnostic(location(node), "both requirements: and python_packages: are set",
                                           fix: "keep only one of them"))
            }
        }
        if let node = mapping["safety_checker"], let text = scalarString(node, what: "safety_checker") {
            if let entry = EntryPoint(parsing: text), Self.projectPath(entry.file) == entry.file {
                spec.safetyChecker = entry
            } else {
                problems.append(Diagnostic(location(node), "safety_checker: must be file.py:Name",
                                           fix: "write for example `safety_checker: safety.py:check`"))
            }
        }
        if let node = mapping["inputs"] {
            spec.inputs = parseInputs(node)
        }
        if let node = mapping["train"] {
            spec.train = parseTrain(node)
        }
        if let node = mapping["output"] {
            if let output = parseOutput(node) { spec.output = output }
        } else {
            problems.append(Diagnostic(location(root), "missing output:", fix: "add for example `output: {type: string}`"))
        }
        if let node = mapping["weights"] {
            spec.weights = parseWeights(node)
        }
        if let node = mapping["concurrency"] {
            if let value = node.int, value >= 1, value <= Limits.concurrency {
                spec.concurrency = value
            } else {
                problems.append(Diagnostic(location(node), "concurrency must be a whole number from 1 to \(Limits.concurrency)",
                                           fix: "write for example `concurrency: 1`"))
            }
        }
        if let node = mapping["timeout"] {
            if let seconds = Self.parseDuration(node), seconds <= Limits.timeout {
                spec.timeout = seconds
            } else {
                problems.append(Diagnostic(location(node), "timeout \"\(Self.clip(node.string ?? ""))\" is not a duration of at most 7 days",
                                           fix: "write seconds or a unit, e.g. `timeout: 90s`, `30m` or `2h`"))
            }
        }
        if let node = mapping["network"] {
            if let value = boolean(node) {
                spec.network = value
            } else {
                problems.append(Diagnostic(location(node), "network must be true or false", fix: "write `network: false`"))
            }
        }
        return spec
    }

    /// Parses `90`, `90s`, `30m`, `2h` into seconds.
    static func parseDuration(_ node: Node) -> Int? {
        if let value = node.int { return value > 0 ? value : nil }
        guard let text = node.string, let unit = text.last, let number = Int(text.dropLast()), number > 0 else { return nil }
        let factor: Int
        switch unit {
        case "s": factor = 1
        case "m": factor = 60
        case "h": factor = 3600
        default: return nil
        }
        let (seconds, overflow) = number.multipliedReportingOverflow(by: factor)
        return overflow ? nil : seconds
    }

    // MARK: - Train

    /// `train: train.py:train` (a training without inputs) or `train: {entry: …, inputs: {…}}`.
    private mutating func parseTrain(_ node: Node) -> TrainSpec? {
        let entryNode: Node
        var inputsNode: Node?
        if let mapping = node.mapping {
            checkKeys(mapping, allowed: Self.trainKeys, context: "in train:")
            guard let entry = mapping["entry"] else {
                problems.append(Diagnostic(location(node), "train: has no entry:",
                                           fix: "write for example `train: {entry: train.py:train, inputs: {steps: {type: integer}}}`"))
                return nil
            }
            entryNode = entry
            inputsNode = mapping["inputs"]
        } else {
            entryNode = node
        }
        guard let text = scalarString(entryNode, what: "train entry") else { return nil }
        guard let entry = EntryPoint(parsing: text), Self.projectPath(entry.file) == entry.file else {
            problems.append(Diagnostic(location(entryNode), "train: must name file.py:Name inside the project",
                                       fix: "write for example `train: {entry: train.py:train}`"))
            return nil
        }
        var train = TrainSpec(entry: entry, inputs: inputsNode.map { parseInputs($0) } ?? [])
        train.location = location(entryNode)
        return train
    }

    // MARK: - Inputs

    private mutating func parseInputs(_ node: Node) -> [InputSpec] {
        guard let mapping = node.mapping else {
            problems.append(Diagnostic(location(node), "inputs: must map each input name to its declaration",
                                       fix: "write for example `inputs: {text: {type: string}}`"))
            return []
        }
        guard mapping.count <= Limits.inputs else {
            problems.append(Diagnostic(location(node), "inputs: declares \(mapping.count) inputs, more than \(Limits.inputs)",
                                       fix: "group related values into an object or array input"))
            return []
        }
        var inputs: [InputSpec] = []
        for (keyNode, valueNode) in mapping {
            guard let name = keyNode.string else { continue }
            if name.utf8.count > 64 || name.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) == nil {
                problems.append(Diagnostic(location(keyNode), "input name \"\(Self.clip(name))\" is not a Python identifier",
                                           fix: "use letters, digits and '_', starting with a letter"))
                continue
            }
            if let input = parseInput(name: name, keyNode: keyNode, node: valueNode) {
                inputs.append(input)
            }
        }
        return inputs
    }

    private mutating func parseInput(name: String, keyNode: Node, node: Node) -> InputSpec? {
        let what = "input \"\(name)\""
        // `text: string` is shorthand for `text: {type: string}`.
        let mapping: Node.Mapping
        if let shorthand = node.scalar?.string {
            mapping = Node.Mapping([(Node("type"), Node(shorthand, Tag(.str), .plain))])
        } else if let value = node.mapping {
            mapping = value
        } else {
            problems.append(Diagnostic(location(node), "\(what) must be a mapping", fix: "write for example `\(name): {type: string}`"))
            return nil
        }
        let typeLocation = mapping["type"].map { location($0) } ?? location(node)
        checkKeys(mapping, allowed: Self.inputKeys, context: "in \(what)")
        guard let typeNode = mapping["type"] else {
            problems.append(Diagnostic(location(node), "\(what) has no type",
                                       fix: "add `type:` with one of \(Self.list(ValueType.inputTypes))"))
            return nil
        }
        guard let type = valueType(typeNode, allowed: ValueType.inputTypes, what: what) else { return nil }
        var input = InputSpec(name: name, type: type)
        input.location = location(keyNode)

        if type == .array {
            if let itemsNode = mapping["items"] {
                input.items = itemType(itemsNode, what: what)
            } else {
                problems.append(Diagnostic(typeLocation, "\(what) is an array without items:",
                                           fix: "add `items: string` (or another type)"))
            }
        } else if let itemsNode = mapping["items"] {
            problems.append(Diagnostic(location(itemsNode), "items: applies only to arrays, but \(what) is \(type.rawValue)",
                                       fix: "remove items: or set `type: array`"))
        }
        input.description = mapping["description"].flatMap { scalarString($0, what: "description") }
        input.deprecated = mapping["deprecated"].flatMap { flag($0, key: "deprecated") }
        input.nullable = mapping["nullable"].flatMap { flag($0, key: "nullable") }

        let numeric = type == .integer || type == .number || (type == .array && (input.items == .integer || input.items == .number))
        let stringy = type == .string || type == .secret || (type == .array && input.items == .string)
        for key in ["minimum", "maximum"] {
            guard let bound = mapping[key] else { continue }
            guard numeric else {
                problems.append(Diagnostic(location(bound), "\(key) applies to integer and number inputs, but \(what) is \(type.rawValue)",
                                           fix: stringy ? "use min_length/max_length for strings" : "remove \(key)"))
                continue
            }
            guard let value = number(bound) else {
                problems.append(Diagnostic(location(bound), "\(key) of \(what) must be a number", fix: "write for example `\(key): 1`"))
                continue
            }
            guard Self.isSafe(value) else {
                problems.append(Diagnostic(location(bound), "\(key) \(Self.clip(bound.scalar?.string ?? ""))) of \(what) is beyond ±2^53 (or not finite)",
                                           fix: "use a number between -9007199254740992 and 9007199254740992"))
                continue
            }
            if key == "minimum" { input.minimum = value } else { input.maximum = value }
        }
        for key in ["min_length", "max_length"] {
            guard let bound = mapping[key] else { continue }
            guard stringy || type == .array else {
                problems.append(Diagnostic(location(bound), "\(key) applies to string and array inputs, but \(what) is \(type.rawValue)",
                                           fix: numeric ? "use minimum/maximum for numbers" : "remove \(key)"))
                continue
            }
            guard let value = bound.int, value >= 0, value <= Limits.length else {
                problems.append(Diagnostic(location(bound), "\(key) of \(what) must be a whole number from 0 to \(Limits.length)", fix: "write for example `\(key): 1`"))
                continue
            }
            if key == "min_length" { input.minLength = value } else { input.maxLength = value }
        }
        if let minimum = input.minimum, let maximum = input.maximum, minimum > maximum, let node = mapping["maximum"] {
            problems.append(Diagnostic(location(node), "maximum \(JSONValue.number(maximum).display) of \(what) is below its minimum \(JSONValue.number(minimum).display)",
                                       fix: "swap them"))
        }
        if let patternNode = mapping["pattern"] {
            if !stringy {
                problems.append(Diagnostic(location(patternNode), "pattern applies to string inputs, but \(what) is \(type.rawValue)", fix: "remove pattern"))
            } else if let pattern = scalarString(patternNode, what: "pattern") {
                if pattern.utf8.count > Limits.patternBytes {
                    problems.append(Diagnostic(location(patternNode), "pattern of \(what) is \(pattern.utf8.count) bytes, more than \(Limits.patternBytes)",
                                               fix: "write a shorter expression"))
                } else { do {
                    _ = try NSRegularExpression(pattern: pattern)
                    input.pattern = pattern
                } catch {
                    problems.append(Diagnostic(location(patternNode), "pattern \"\(Self.clip(pattern))\" of \(what) is not a valid regular expression",
                                               fix: "fix the expression, and quote it in single quotes so YAML keeps backslashes"))
                } }
            }
        }
        if let choicesNode = mapping["choices"] {
            if ![.string, .integer, .number].contains(type) {
                problems.append(Diagnostic(location(choicesNode), "choices apply to string, integer and number inputs, but \(what) is \(type.rawValue)",
                                           fix: "remove choices"))
            } else if let sequence = choicesNode.sequence, sequence.count > Limits.choices {
                problems.append(Diagnostic(location(choicesNode), "\(what) has \(sequence.count) choices, more than \(Limits.choices)",
                                           fix: "use a string input without choices"))
            } else if let sequence = choicesNode.sequence, !sequence.isEmpty {
                var choices: [JSONValue] = []
                for item in sequence {
                    if let value = typedValue(item, type: type, what: "choice of \(what)") { choices.append(value) }
                }
                input.choices = choices
            } else {
                problems.append(Diagnostic(location(choicesNode), "choices of \(what) must be a non-empty list", fix: "write for example `choices: [fast, accurate]`"))
            }
        }
        if let acceptNode = mapping["accept"] {
            if type != .file && !(type == .array && input.items == .file) {
                problems.append(Diagnostic(location(acceptNode), "accept applies to file inputs, but \(what) is \(type.rawValue)", fix: "remove accept"))
            } else {
                input.accept = scalarString(acceptNode, what: "accept")
            }
        }
        if let defaultNode = mapping["default"] {
            if type == .file {
                if defaultNode.null == nil {
                    problems.append(Diagnostic(location(defaultNode), "\(what) is a file and cannot have a default",
                                               fix: "remove default, or write `nullable: true` to make it optional"))
                } else {
                    input.nullable = true
                }
            } else if defaultNode.null != nil {
                input.nullable = true
            } else if let value = typedValue(defaultNode, type: type, items: input.items, what: "default of \(what)") {
                input.default = value
                checkDefault(value, of: input, at: location(defaultNode))
            }
        }
        return input
    }

    /// The default must satisfy the input's own constraints.
    private mutating func checkDefault(_ value: JSONValue, of input: InputSpec, at location: SourceLocation) {
        let what = "input \"\(input.name)\""
        if let choices = input.choices, !choices.contains(where: { $0.doubleValue != nil ? $0.doubleValue == value.doubleValue : $0 == value }) {
            problems.append(Diagnostic(location, "default \(value.display) of \(what) is not one of its choices \(JSONValue.array(choices).display)",
                                       fix: "use one of the choices or add it to choices"))
            return
        }
        for message in InputValidator.violations(of: value, against: input) {
            problems.append(Diagnostic(location, "default \(value.display) of \(what) \(message)",
                                       fix: "change the default or the constraint"))
        }
    }

    // MARK: - Output

    private mutating func parseOutput(_ node: Node) -> OutputSpec? {
        guard let output = parseOutputPart(node, what: "output", depth: 1) else { return nil }
        return output
    }

    /// One part of the output: the whole of it (`what` is "output"), an array's or iterator's
    /// `items`, or an object's property, each of which may nest again up to ``Limits/outputDepth``.
    private mutating func parseOutputPart(_ node: Node, what: String, depth: Int) -> OutputSpec? {
        let top = depth == 1
        let mapping: Node.Mapping
        if let shorthand = node.scalar?.string {
            mapping = Node.Mapping([(Node("type"), Node(shorthand, Tag(.str), .plain))])
        } else if let value = node.mapping {
            mapping = value
        } else {
            problems.append(Diagnostic(location(node), "\(what) must be a type or a mapping", fix: "write for example `\(top ? "output" : "items"): {type: string}`"))
            return nil
        }
        guard depth <= Limits.outputDepth else {
            problems.append(Diagnostic(location(node), "\(what) nests deeper than \(Limits.outputDepth) levels",
                                       fix: "flatten it, or use `type: object` without properties for free-form results"))
            return nil
        }
        checkKeys(mapping, allowed: top ? Self.outputKeys : Self.outputKeys.filter { $0 != "concatenate" }, context: "in \(what)")
        guard let typeNode = mapping["type"] else {
            problems.append(Diagnostic(location(node), "\(what) has no type", fix: "add `type:` with one of \(Self.list(ValueType.allCases))"))
            return nil
        }
        let allowed = top ? ValueType.allCases.filter { $0 != .secret } : ValueType.allCases.filter { $0 != .secret && $0 != .iterator }
        guard let type = valueType(typeNode, allowed: allowed, what: what) else { return nil }
        var output = OutputSpec(type: type)
        output.description = mapping["description"].flatMap { scalarString($0, what: "description") }
        if let nullableNode = mapping["nullable"] { output.nullable = flag(nullableNode, key: "nullable") }
        if let itemsNode = mapping["items"] {
            if type == .array || type == .iterator {
                output.items = parseOutputPart(itemsNode, what: "items of \(what)", depth: depth + 1)
            } else {
                problems.append(Diagnostic(location(itemsNode), "items: applies to array and iterator outputs, but \(what) is \(type.rawValue)",
                                           fix: "remove items: or change the type"))
            }
        } else if type == .array || type == .iterator {
            problems.append(Diagnostic(location(typeNode), "\(what) is \(type.rawValue) without items:", fix: "add `items: string` (or another type)"))
        }
        if let propertiesNode = mapping["properties"] {
            if type != .object {
                problems.append(Diagnostic(location(propertiesNode), "properties: applies to object outputs, but \(what) is \(type.rawValue)",
                                           fix: "remove properties: or set `type: object`"))
            } else if let properties = propertiesNode.mapping, properties.count > Limits.inputs {
                problems.append(Diagnostic(location(propertiesNode), "properties: declares \(properties.count) fields, more than \(Limits.inputs)",
                                           fix: "use `type: object` without properties for free-form results"))
            } else if let properties = propertiesNode.mapping {
                var result: [String: OutputSpec] = [:]
                for (key, value) in properties {
                    guard let name = key.string else { continue }
                    guard name.utf8.count <= 64 else {
                        problems.append(Diagnostic(location(key), "output property \"\(Self.clip(name))\" has a name longer than 64 bytes", fix: "shorten it"))
                        continue
                    }
                    if let property = parseOutputPart(value, what: "output property \"\(name)\"", depth: depth + 1) { result[name] = property }
                }
                output.properties = result
            } else {
                problems.append(Diagnostic(location(propertiesNode), "properties: must map names to types", fix: "write for example `properties: {label: {type: string}}`"))
            }
        }
        if top, let concatenateNode = mapping["concatenate"] {
            let value = flag(concatenateNode, key: "concatenate")
            if value == true && !(type == .iterator && output.items?.type == .string) {
                problems.append(Diagnostic(location(concatenateNode), "concatenate applies to iterators of strings",
                                           fix: "set `type: iterator` and `items: string`, or remove concatenate"))
            }
            output.concatenate = value
        }
        return output
    }

    // MARK: - Weights

    private mutating func parseWeights(_ node: Node) -> [WeightsSpec] {
        guard let sequence = node.sequence else {
            problems.append(Diagnostic(location(node), "weights: must be a list", fix: "write for example `weights: [{path: weights/model.npz}]`"))
            return []
        }
        guard sequence.count <= Limits.weights else {
            problems.append(Diagnostic(location(node), "weights: lists \(sequence.count) entries, more than \(Limits.weights)",
                                       fix: "list folders instead of single files"))
            return []
        }
        var weights: [WeightsSpec] = []
        for item in sequence {
            var entry: WeightsSpec
            if let path = item.scalar?.string {
                entry = WeightsSpec(path: path)
            } else if let mapping = item.mapping {
                checkKeys(mapping, allowed: Self.weightsKeys, context: "in a weights entry")
                guard let pathNode = mapping["path"], let path = scalarString(pathNode, what: "path") else {
                    problems.append(Diagnostic(location(item), "weights entry has no path:", fix: "add `path: weights/model.npz`"))
                    continue
                }
                entry = WeightsSpec(path: path)
                if let pinNode = mapping["sha256"], let pin = scalarString(pinNode, what: "sha256") {
                    let hex = pin.hasPrefix("sha256:") ? String(pin.dropFirst(7)) : pin
                    if hex.range(of: "^[0-9a-f]{64}$", options: .regularExpression) == nil {
                        problems.append(Diagnostic(location(pinNode), "sha256 \"\(pin)\" is not 64 lowercase hex digits",
                                                   fix: "paste the output of `sha256sum \(path)`, or remove the pin"))
                    } else {
                        entry.sha256 = hex
                    }
                }
            } else {
                problems.append(Diagnostic(location(item), "weights entry must be a path or a mapping", fix: "write `- path: weights/model.npz`"))
                continue
            }
            guard let normalized = Self.projectPath(entry.path) else {
                problems.append(Diagnostic(location(item), "weights path \"\(Self.clip(entry.path))\" is outside the project",
                                           fix: "use a path relative to the folder that holds lathe.yaml"))
                continue
            }
            entry.path = normalized
            entry.location = location(item.mapping?["path"] ?? item)
            weights.append(entry)
        }
        return weights
    }

    // MARK: - Scalars

    private func location(_ node: Node?) -> SourceLocation {
        let mark = node?.mark
        return SourceLocation(file: fileName, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    private mutating func checkKeys(_ mapping: Node.Mapping, allowed: [String], context: String) {
        for key in mapping.keys {
            guard let name = key.string else { continue }
            if !allowed.contains(name) {
                let hint = closest(to: name, in: allowed).map { "did you mean \"\($0)\"?" } ?? "allowed keys are \(allowed.joined(separator: ", "))"
                problems.append(Diagnostic(location(key), "unknown key \"\(name)\" \(context)", fix: hint))
            }
        }
    }

    private mutating func valueType(_ node: Node, allowed: [ValueType], what: String) -> ValueType? {
        guard let text = node.scalar?.string, let type = ValueType(rawValue: text), allowed.contains(type) else {
            let text = node.scalar?.string ?? "?"
            let aliases = ["str": "string", "int": "integer", "float": "number", "bool": "boolean", "Path": "file", "dict": "object", "list": "array"]
            let hint = aliases[text].map { "write `type: \($0)`" } ?? "write one of \(Self.list(allowed))"
            problems.append(Diagnostic(location(node), "\(what) has unknown type \"\(text)\"", fix: hint))
            return nil
        }
        return type
    }

    private mutating func itemType(_ node: Node, what: String) -> ValueType? {
        let typeNode = node.mapping?["type"] ?? node
        if let mapping = node.mapping { checkKeys(mapping, allowed: ["type"], context: "in items of \(what)") }
        return valueType(typeNode, allowed: ValueType.itemTypes, what: "items of \(what)")
    }

    private mutating func scalarString(_ node: Node, what: String) -> String? {
        guard let scalar = node.scalar else {
            problems.append(Diagnostic(location(node), "\(what) must be a single value, not a list or mapping", fix: "write it on one line"))
            return nil
        }
        guard scalar.string.utf8.count <= Limits.textBytes else {
            problems.append(Diagnostic(location(node), "\(what) is \(scalar.string.utf8.count) bytes long, more than \(Limits.textBytes >> 10) KiB",
                                       fix: "shorten it; long text belongs in README.md"))
            return nil
        }
        return scalar.string
    }

    /// Debian policy's package names: lowercase letters, digits, `+ - .`, starting with a
    /// letter or digit, at least two characters. Nothing else reaches apt (never an option).
    public static func isDebianPackageName(_ name: String) -> Bool {
        guard (2...100).contains(name.utf8.count), let first = name.utf8.first, (48...57).contains(first) || (97...122).contains(first) else { return false }
        return name.utf8.allSatisfy { (48...57).contains($0) || (97...122).contains($0) || $0 == 43 || $0 == 45 || $0 == 46 }
    }

    private mutating func stringList(_ node: Node, what: String) -> [String] {
        guard let sequence = node.sequence else {
            problems.append(Diagnostic(location(node), "\(what) must be a list", fix: "write for example `\(what): [numpy>=1.26]`"))
            return []
        }
        guard sequence.count <= Limits.packages else {
            problems.append(Diagnostic(location(node), "\(what) lists \(sequence.count) entries, more than \(Limits.packages)",
                                       fix: "list only the packages the model imports"))
            return []
        }
        return sequence.compactMap { scalarString($0, what: "an entry of \(what)") }
    }

    private func boolean(_ node: Node) -> Bool? {
        guard node.scalar?.style == .plain else { return nil }
        return node.bool
    }

    private mutating func flag(_ node: Node, key: String) -> Bool? {
        if let value = boolean(node) { return value }
        problems.append(Diagnostic(location(node), "\(key) must be true or false", fix: "write `\(key): true`"))
        return nil
    }

    private func number(_ node: Node) -> Double? {
        guard node.scalar?.style == .plain else { return nil }
        if let value = node.int { return Double(value) }
        return node.float
    }

    /// Every number in a value (a default, a choice) is finite and within ±2^53.
    static func numbersAreSafe(_ value: JSONValue) -> Bool {
        switch value {
        case .int(let int): return isSafe(Double(int))
        case .number(let double): return isSafe(double)
        case .array(let values): return values.allSatisfy(numbersAreSafe)
        case .object(let object): return object.values.allSatisfy(numbersAreSafe)
        default: return true
        }
    }

    /// Converts a YAML value to JSON after checking it has the declared type.
    private mutating func typedValue(_ node: Node, type: ValueType, items: ValueType? = nil, what: String) -> JSONValue? {
        let value = Self.json(node)
        guard Self.numbersAreSafe(value) else {
            problems.append(Diagnostic(location(node), "\(what) holds a number beyond ±2^53 (or not finite)",
                                       fix: "use numbers between -9007199254740992 and 9007199254740992"))
            return nil
        }
        if let message = InputValidator.typeMismatch(value, type: type, items: items) {
            problems.append(Diagnostic(location(node), "\(what) is \(value.display), \(message)",
                                       fix: "write a value of type \(type == .array ? "array of \(items?.rawValue ?? "?")" : type.rawValue)"))
            return nil
        }
        if type == .number, case .int(let int) = value { return .number(Double(int)) }
        return value
    }

    /// Plain YAML scalars are resolved by their tag (so `1` is an integer, `"1"` a string).
    static func json(_ node: Node) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style != .plain { return .string(scalar.string) }
            if node.null != nil { return .null }
            if let value = node.bool { return .bool(value) }
            if let value = node.int { return .int(value) }
            if let value = node.float { return .number(value) }
            return .string(scalar.string)
        case .sequence(let sequence):
            return .array(sequence.map(json))
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping { object[key.string ?? ""] = json(value) }
            return .object(object)
        case .alias:
            return .null
        }
    }

    /// One sentence for a YAML file that does not parse: where, what, and what to check.
    static func syntaxDiagnostic(_ error: YamlError, fileName: String) -> Diagnostic {
        let fix = "check indentation and quoting there (strings holding ':' or '#' need quotes)"
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            // libyaml says where it noticed the problem and, often, where the broken construct began.
            let started = context.map { " (\($0.text) at \($0.mark.line):\($0.mark.column))" } ?? ""
            return Diagnostic(SourceLocation(file: fileName, line: mark.line, column: mark.column), "YAML syntax error: \(problem)\(started)", fix: fix)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return Diagnostic(SourceLocation(file: fileName, line: context.mark.line, column: context.mark.column),
                              "key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) appears twice", fix: "keep one of them")
        default:
            return Diagnostic(SourceLocation(file: fileName, line: 1, column: 1), "YAML syntax error: \(error)", fix: fix)
        }
    }

    private static func list(_ types: [ValueType]) -> String {
        types.map(\.rawValue).joined(separator: ", ")
    }
}
