fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "networks/alexnet.net".into());
    let src = std::fs::read_to_string(&path).expect("read");
    let file = netc::syntax::parse(&src).expect("parse");
    let m = netc::lower::lower(&file).expect("lower");
    print!("{}", netc::ir::print::print(&m.graph, Default::default()));
    let c = netc::ir::cost::total(&m.graph);
    println!("{c:?} cross={}", m.graph.cross_edges());
}
