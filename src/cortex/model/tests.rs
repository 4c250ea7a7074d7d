//! Model-level tests: loading, identity, the required forms and props, the extended model,
//! and the getModelDict / getModelDefs shapes.

use super::*;

#[allow(dead_code)]
fn model() -> Arc<Model> {
    Model::shared().expect("the compiled-in model loads")
}

#[test]
fn loads_fast_and_complete() {
    let t0 = std::time::Instant::now();
    let m = Model::load().expect("load");
    let took = t0.elapsed();
    eprintln!("model load took {took:?}");
    assert_eq!(m.version(), "2.256.0");
    assert_eq!(m.ctordefs.len(), 53);
    assert_eq!(m.type_names.len(), 645);
    assert_eq!(m.form_names.len(), 595);
    assert_eq!(m.univs.len(), 2);
    assert_eq!(m.edges.len(), 90);
    assert_eq!(m.interfaces.len(), 21);
    let nprops: usize = m.forms.values().map(|f| f.props().len()).sum();
    assert_eq!(nprops, 5615);
    assert_eq!(m.forms.values().filter(|f| f.runt).count(), 7);
}
