//! Metrics.

/// Sudoku distance of a row-major grid of 81 digits.
pub fn sudoku_distance(grid: &[u8]) -> u32 {
    let mut total = 0u32;
    for unit in 0..27 {
        let mut counts = [0u32; 10];
        for i in 0..9 {
            let cell = match unit / 9 {
                0 => (unit % 9) * 9 + i,
                1 => i * 9 + unit % 9,
                _ => {
                    let b = unit % 9;
                    ((b / 3) * 3 + i / 3) * 9 + (b % 3) * 3 + i % 3
                }
            };
            let d = grid.get(cell).copied().unwrap_or(0);
            if (1..=9).contains(&d) {
                counts[d as usize] += 1;
            }
        }
        total += counts[1..].iter().map(|&c| c.abs_diff(1)).sum::<u32>();
    }
    total
}
