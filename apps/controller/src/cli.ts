console.log(JSON.stringify({a:process.argv.slice(2)}))
