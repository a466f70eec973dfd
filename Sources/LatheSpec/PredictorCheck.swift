import Foundation

/// The static check of the predict entry point against `lathe.yaml` (DESIGN §3).
public enum PredictorCheck {
    /// Throws ``Diagnostics`` listing every disagreement between the spec and the code, for
    /// `predict:` and, when the model has one, `train:`.
    @discardableResult
    public static func check(_ spec: ModelSpec, project: URL) throws -> PredictorInspection {
        let inspection = try inspect(spec, role: .predict, project: project)
        var problems = compare(spec, inspection)
        if let training = spec.training {
            problems += compare(training, try inspect(training, role: .train, project: project), role: .train)
        }
        if !problems.isEmpty { throw Diagnostics(problems) }
        if let checker = spec.safetyChecker {
            let found = try PredictorInspection.inspect(project: project, file: checker.file, symbol: checker.symbol)
            if found.error != nil {
                throw Diagnostics([Diagnostic(nil, "safety_checker \(checker) cannot be found (\(found.error ?? ""))",
                                              fix: "define \(checker.symbol) in \(checker.file) or remove safety_checker:")])
            }
        }
        return inspection
    }

    private static func inspect(_ spec: ModelSpec, role: EntryRole, project: URL) throws -> PredictorInspection {
        let file = spec.predict.file
        guard FileManager.default.fileExists(atPath: project.appendingPathComponent(file).path) else {
            throw Diagnostics([Diagnostic(spec.predictLocation, "\(role.rawValue) file \"\(file)\" does not exist",
                                          fix: "create \(file) next to lathe.yaml or fix \(role.rawValue):")])
        }
        return try PredictorInspection.inspect(project: project, file: file, symbol: spec.predict.symbol, role: role)
    }

    /// Compares an inspection with the spec; pure, so tests can feed it directly.
    /// `role` says which entry point `spec.predict` is (``ModelSpec/training`` for `train:`).
    public static func compare(_ spec: ModelSpec, _ inspection: PredictorInspection, role: EntryRole = .predict) -> [Diagnostic] {
        let file = spec.predict.file
        let method = role == .train ? "train()" : "predict()"
        let declaredUnder = role == .train ? "train: inputs:" : "inputs:"
        func at(_ line: Int?, _ column: Int? = 1) -> SourceLocation {
            SourceLocation(file: file, line: line ?? 1, column: column ?? 1)
        }
        switch inspection.error {
        case "syntax":
            return [Diagnostic(at(inspection.line, inspection.column), "Python syntax error: \(inspection.message ?? "")",
                               fix: "fix the code so `python3 -m py_compile \(file)` passes")]
        case "missing_symbol":
            let found = inspection.available ?? []
            let hint = found.isEmpty ? "define class \(spec.predict.symbol) with a \(method) method"
                : "define it, or point \(role.rawValue): at one of \(found.joined(separator: ", "))"
            return [Diagnostic(spec.predictLocation, "\(file) has no class or function named \"\(spec.predict.symbol)\"", fix: hint)]
        case .some(let error):
            return [Diagnostic(at(1), "cannot read \(file): \(inspection.message ?? error)", fix: "check the file is readable UTF-8")]
        case nil:
            break
        }
        guard let predict = inspection.predict else {
            return [Diagnostic(at(inspection.line, inspection.column), "class \"\(spec.predict.symbol)\" has no \(role == .train ? "train()" : "predict() or run()") method",
                               fix: "add `def \(role.rawValue)(self, ...)` to it")]
        }
        var problems: [Diagnostic] = []
        let parameters = Dictionary(predict.params.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for input in spec.inputs {
            let declared = input.location.map { " (\($0.file):\($0.line))" } ?? ""
            guard let parameter = parameters[input.name] else {
                if !predict.varKwargs {
                    problems.append(Diagnostic(at(predict.line, predict.column),
                                               "\(predict.name)() has no parameter \"\(input.name)\", which lathe.yaml declares\(declared)",
                                               fix: "add `\(input.name)` to \(predict.name)() or remove it from \(declaredUnder)"))
                }
                continue
            }
            let here = at(parameter.line, parameter.column)
            if let annotation = parameter.annotation, let actual = annotation.type, !compatible(input, annotation) {
                let expected = input.type == .array ? "array of \(input.items?.rawValue ?? "?")" : input.type.rawValue
                let found = actual == "array" ? "array of \(annotation.items ?? "?")" : actual
                problems.append(Diagnostic(here, "parameter \"\(input.name)\" is annotated \(annotation.text ?? actual) (\(found)) but lathe.yaml declares it \(expected)\(declared)",
                                           fix: "make the annotation and the declared type agree"))
            }
            if let code = parameter.default.literal, let written = code, let declaredDefault = input.default,
               !sameValue(written, declaredDefault) {
                problems.append(Diagnostic(here, "parameter \"\(input.name)\" defaults to \(written.display) but lathe.yaml declares default \(declaredDefault.display)\(declared)",
                                           fix: "make the two defaults agree"))
            }
        }
        let declaredNames = Set(spec.inputs.map(\.name))
        // An undeclared parameter is never in the form, the schema or a caller's reach: with no
        // default it cannot run, with one it is an input nobody can set.
        for parameter in predict.params where !declaredNames.contains(parameter.name) {
            let problem = parameter.default.isRequired ? "has no default and is not declared in lathe.yaml"
                : "is not declared in lathe.yaml, so no caller can set it (it would always be its default)"
            problems.append(Diagnostic(at(parameter.line, parameter.column), "parameter \"\(parameter.name)\" \(problem)",
                                       fix: role == .train ? "declare it under train: inputs: in lathe.yaml"
                                                           : "run `lathe validate --write` to declare it under inputs: from the signature"))
        }
        for parameter in inspection.setup?.params ?? [] where parameter.name != "weights" {
            problems.append(Diagnostic(at(parameter.line, parameter.column), "setup() takes parameter \"\(parameter.name)\"; it may take only `weights`",
                                       fix: "remove it, and read settings from inputs or files instead"))
        }
        return problems
    }

    static func compatible(_ input: InputSpec, _ annotation: PredictorInspection.TypeInfo) -> Bool {
        guard let actual = annotation.type else { return true }
        if actual == "object" && (input.type == .object) { return true }
        switch (input.type, actual) {
        case (.secret, "string"), (.file, "string"), (.number, "integer"):
            return true
        case (.array, "array"):
            guard let items = annotation.items, let declared = input.items else { return true }
            return items == declared.rawValue || (declared == .file && items == "string")
        default:
            return input.type.rawValue == actual
        }
    }

    static func sameValue(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = a.doubleValue, let y = b.doubleValue { return x == y }
        return a == b
    }
}
