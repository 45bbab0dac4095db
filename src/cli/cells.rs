//! `lstm cells`: every cell the command line knows (the zoo's, and a binary's own) as its
//! spec describes it (name, gates, carried states, parameters, constant input, equations),
//! read from the
//! [`CellSpec`]s alone.

use std::io::{self, Write};

use lstm::{CellSpec, Init, ParamShape};

/// Writes the description of every spec in `specs`, separated by blank lines.
pub fn write_all(out: &mut impl Write, specs: &[&CellSpec]) -> io::Result<()> {
    for (index, spec) in specs.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        write_cell(out, spec)?;
    }
    Ok(())
}

/// Writes one cell: its names, gates in weight-row order, parameters, constant input and
/// equations, each equation marked as written in the spec or defaulted from the standard LSTM.
fn write_cell(out: &mut impl Write, spec: &CellSpec) -> io::Result<()> {
    writeln!(out, "{} ({})", spec.name, spec.type_name)?;
    let gates: Vec<&str> = spec.gates.iter().map(|gate| gate.letter()).collect();
    writeln!(out, "  gates: {}", gates.join(" "))?;
    let mut states = vec!["h"];
    states.extend(spec.states);
    writeln!(out, "  states: {}", states.join(" "))?;
    if spec.params.is_empty() {
        writeln!(out, "  params: none")?;
    } else {
        writeln!(out, "  params:")?;
        for param in spec.params {
            let shape = shape(param.shape, spec.num_gates());
            writeln!(
                out,
                "    {}: {shape}, init {}",
                param.name,
                init(param.init)
            )?;
        }
    }
    if let Some(constant) = spec.constant {
        writeln!(
            out,
            "  constant input: {constant}, projected by weight_{constant}: \
             ({}·hidden, constant_size)",
            spec.num_gates()
        )?;
    }
    writeln!(out, "  equations:")?;
    let columns = |text: &str| text.chars().count();
    let width = spec
        .equations
        .iter()
        .map(|eq| columns(eq.name) + columns(eq.rhs))
        .max();
    for equation in spec.equations {
        let source = if equation.written {
            "written"
        } else {
            "default"
        };
        let padding = width.unwrap_or(0) - columns(equation.name) - columns(equation.rhs);
        writeln!(
            out,
            "    {} = {}{:padding$}  [{source}]",
            equation.name, equation.rhs, ""
        )?;
    }
    Ok(())
}

/// A parameter's shape as the user reads it, in terms of `hidden`.
fn shape(shape: ParamShape, gates: usize) -> String {
    match shape {
        ParamShape::PerUnit => "(hidden,)".to_string(),
        ParamShape::Scalar => "(1,)".to_string(),
        ParamShape::Gates => format!("({gates}·hidden,)"),
    }
}

/// A parameter's initialisation in words.
fn init(init: Init) -> String {
    match init {
        Init::Default => "uniform ±1/√hidden (PyTorch default)".to_string(),
        Init::Zeros => "zeros".to_string(),
        Init::Ones => "ones".to_string(),
        Init::Constant(value) => format!("constant {value}"),
        Init::Uniform(lo, hi) => format!("uniform [{lo}, {hi})"),
    }
}

#[cfg(test)]
mod tests {
    use lstm::{Equation, Gate, ParamSpec, Workspace};

    use super::*;

    const NO_WORKSPACE: Workspace = Workspace {
        per_unit: 0,
        per_row: 0,
    };

    /// A spec with one parameter of each kind and a mix of written and default equations.
    const SPEC: CellSpec = CellSpec {
        name: "demo",
        type_name: "Demo",
        gates: &[Gate::Forget, Gate::Cell, Gate::Output],
        params: &[
            ParamSpec {
                name: "bias",
                shape: ParamShape::PerUnit,
                init: Init::Ones,
            },
            ParamSpec {
                name: "scale",
                shape: ParamShape::Scalar,
                init: Init::Constant(1.5),
            },
            ParamSpec {
                name: "gain",
                shape: ParamShape::Gates,
                init: Init::Default,
            },
        ],
        constant: None,
        equations: &[
            Equation {
                name: "i",
                rhs: "1.0 - f",
                written: true,
            },
            Equation {
                name: "f",
                rhs: "sigmoid(z_f)",
                written: false,
            },
        ],
        reads_h_prev: false,
        scratch: NO_WORKSPACE,
        cache: NO_WORKSPACE,
        backward_scratch: NO_WORKSPACE,
        shared_preactivation_grad: true,
        unit_local: false,
        record: &[],
        states: &["c"],
    };

    #[test]
    fn describes_a_cell_from_its_spec() {
        let mut out = Vec::new();
        write_all(&mut out, &[&SPEC]).unwrap();
        let expected = "\
demo (Demo)
  gates: f g o
  states: h c
  params:
    bias: (hidden,), init ones
    scale: (1,), init constant 1.5
    gain: (3·hidden,), init uniform ±1/√hidden (PyTorch default)
  equations:
    i = 1.0 - f       [written]
    f = sigmoid(z_f)  [default]
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn names_the_constant_input_and_its_projection() {
        let conditioned = CellSpec {
            constant: Some("style"),
            ..SPEC
        };
        let mut out = Vec::new();
        write_all(&mut out, &[&conditioned]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "  constant input: style, projected by weight_style: (3·hidden, constant_size)\n  \
                 equations:"
            ),
            "{text}"
        );
    }

    #[test]
    fn lists_every_zoo_cell() {
        let mut out = Vec::new();
        write_all(&mut out, lstm::zoo::all()).unwrap();
        let text = String::from_utf8(out).unwrap();
        for spec in lstm::zoo::all() {
            assert!(
                text.contains(&format!("{} ({})\n", spec.name, spec.type_name)),
                "{text}"
            );
        }
        assert!(text.contains("forget_bias: (hidden,), init ones"), "{text}");
    }
}
