fn main() {
    for p in std::env::args().skip(1) {
        let bin = match profiler::binary::GoBinary::open(std::path::Path::new(&p)) {
            Ok(b) => b,
            Err(e) => { println!("{p}: {e}"); continue; }
        };
        println!("{p}: {} {:?} text={:#x} md={:#x} pie={}", bin.version, bin.symbol_source, bin.text.text, bin.text.moduledata, bin.pie);
        match profiler::probes::plan(&bin) {
            Ok(plan) => {
                for pr in &plan.probes {
                    for (s, o) in pr.sites.iter().zip(&pr.offsets) {
                        println!("  {:32} {:#x}+{:#x} off={:#x} {:?} {}", pr.function.name, pr.function.entry, s.addr - pr.function.entry, o, s.placement, s.instruction);
                    }
                }
                println!("  globals {:x?}", plan.globals);
                println!("  decoded {:x?}", profiler::globals::by_decoding(&bin, plan.layout));
                if let Some(s) = bin.data_symbol("runtime.allgs") { println!("  allgs sym {s:#x}"); }
            }
            Err(e) => println!("  plan error: {e}"),
        }
    }
}
